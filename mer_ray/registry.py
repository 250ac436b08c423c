"""Spec-string registries in the style of timm's `create_model`.

Adding an encoder, a fusion or a selection policy is one decorated function:

    ENCODERS = Registry("encoder")

    @ENCODERS.register("logmel-stats")
    def logmel_stats(**kwargs): ...

    ENCODERS.create("logmel-stats", n_mels=64)

An entry may carry metadata given at registration (`@POLICIES.register("class-quota",
params=ClassQuota)`), read back with `meta(name)`: the registry, not a side table, is where
what an entry needs is written down.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            self._meta[name] = dict(meta)
            return factory

        return add

    def meta(self, name: str) -> dict[str, Any]:
        """What `name` was registered with (empty when nothing)."""
        self.get(name)
        return self._meta[name]

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or 'none'}"
            ) from None

    def create(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)
