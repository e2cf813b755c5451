"""Top frames by self time from py-spy's raw (collapsed) output.

    python bench/flame_summary.py profile.txt [N]

Each line of `py-spy record --format raw` is a stack, frames joined by ";", then a
sample count. A frame's self time is the samples in which it is the innermost frame.
Prints the N (default 15) frames with the most, as a share of all samples.
"""

import collections
import re
import sys


def main(path: str, top: int = 15) -> None:
    self_samples: collections.Counter = collections.Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            # "function (path/to/file.py:123)" -> "function (file.py)": lines vary by sample.
            leaf = re.sub(r"\((?:.*/)?([^/:]+):\d+\)$", r"(\1)", leaf)
            self_samples[leaf] += int(count)
            total += int(count)
    print(f"top {top} frames by self time, {total} samples")
    for frame, samples in self_samples.most_common(top):
        print(f"{100 * samples / max(total, 1):6.1f}%  {frame}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15)
