from __future__ import annotations


class SpecError(ValueError):
    """A network spec the workbench refuses; the message is shown to users as is.

    `layer` is the path of the offending layer ("3", "5.layers.2") or None when the problem is
    not one layer's (bad JSON, no layers, a wrong input shape).
    """

    def __init__(self, message: str, layer: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.layer = layer


class Where:
    """The layer a problem belongs to, so every message names its path and type the same way."""

    def __init__(self, path: str, type_: str | None = None) -> None:
        self.path = path
        self.type = type_

    def error(self, problem: str) -> SpecError:
        label = f"Layer {self.path} ({self.type})" if self.type else f"Layer {self.path}"
        return SpecError(f"{label}: {problem}", layer=self.path)


class NetworkInputError(Exception):
    """Bad input for a network (a taken name, a spec the allowlist refuses), with its form field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
