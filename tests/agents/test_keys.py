from agents import keys


def test_generated_keys_are_well_formed_and_unique():
    generated = {keys.generate_key() for _ in range(200)}
    assert len(generated) == 200
    for key in generated:
        assert key.startswith("aispm_")
        assert keys.is_well_formed(key)


def test_a_changed_character_breaks_the_checksum():
    key = keys.generate_key()
    body, checksum = key.rsplit("_", 1)
    flipped = body[:-1] + ("a" if body[-1] != "a" else "b")
    assert not keys.is_well_formed(f"{flipped}_{checksum}")


def test_garbage_is_not_well_formed():
    for value in [
        "",
        "aispm_",
        "Bearer x",
        "aispm_abc_def",
        "x" * 500,
        "aispm_" + "é" * 32 + "_000000",
    ]:
        assert not keys.is_well_formed(value)


def test_the_stored_hash_does_not_contain_the_key():
    key = keys.generate_key()
    assert key not in keys.hash_key(key)
    assert len(keys.hash_key(key)) == 64
