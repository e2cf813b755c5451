"""@gated: run a function only once aispm approved the call, with the approved params."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ._async import AsyncClient
from ._core import WaitPolicy
from ._errors import AispmError
from ._sync import Client

F = TypeVar("F", bound=Callable[..., Any])
Text = str | Callable[[dict[str, Any]], str]
Evidence = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None

# A reviewer who is away should not leave a pending decision behind that a late
# approval would release while nobody acts on it.
GATED_POLICY = WaitPolicy(cancel_on_timeout=True)


def _resolve(value: Any, params: dict[str, Any]) -> Any:
    return value(params) if callable(value) else value


def gated(
    action: str,
    *,
    reasoning: Text,
    evidence: Evidence = None,
    confidence: float | None = None,
    client: Client | AsyncClient | None = None,
    policy: WaitPolicy = GATED_POLICY,
) -> Callable[[F], F]:
    """Gate a function that performs `action` itself (an action type with connector `none`).

    The call's arguments, by name, are the params. Each call submits them, waits per
    `policy`, and runs the function only once the decision is released, with the
    approved params (a reviewer may have edited them) as keyword arguments; it
    returns what the function returns. Otherwise it raises Denied, Rejected (its
    `reason` is the reviewer's words), Expired, Cancelled, Blocked, WaitTimeout, or
    an ApiError such as OutOfScope. `reasoning` and `evidence` may be callables that
    receive the params. Without `client`, one is made from AISPM_URL and AISPM_KEY.
    Coroutine functions are gated through an AsyncClient.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
            raise TypeError("@gated needs named parameters: *args cannot become params.")
        is_async = inspect.iscoroutinefunction(fn)
        wanted = AsyncClient if is_async else Client
        if client is not None and not isinstance(client, wanted):
            raise TypeError(f"@gated on {fn.__name__} needs an {wanted.__name__}.")
        holder: dict[str, Any] = {}

        def client_for() -> Any:
            if client is not None:
                return client
            if "client" not in holder:
                holder["client"] = wanted.from_env()
            return holder["client"]

        def params_of(args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            params: dict[str, Any] = {}
            for name, value in bound.arguments.items():
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    params.update(value)
                else:
                    params[name] = value
            return params

        def submission(params: dict[str, Any]) -> dict[str, Any]:
            text = _resolve(reasoning, params)
            if not isinstance(text, str) or not text.strip():
                raise AispmError("@gated needs a non-empty reasoning.")
            return {
                "action": action,
                "params": params,
                "reasoning": text,
                "evidence": _resolve(evidence, params),
                "confidence": confidence,
            }

        if is_async:

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                gate = client_for()
                decision = await gate.submit(**submission(params_of(args, kwargs)))
                decision = await gate.wait(decision, policy=policy)
                return await fn(**decision.effective_params)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            gate = client_for()
            decision = gate.submit(**submission(params_of(args, kwargs)))
            decision = gate.wait(decision, policy=policy)
            return fn(**decision.effective_params)

        return run  # type: ignore[return-value]

    return decorate
