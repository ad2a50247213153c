"""Every public class, function, method and property of the package says what it does (pydoc reads well)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import cable_server


def undocumented() -> list[str]:
    missing = []
    for info in pkgutil.walk_packages(cable_server.__path__, "cable_server."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or obj.__module__ != module.__name__:
                continue
            if not obj.__doc__:
                missing.append(f"{info.name}.{name}")
            if not inspect.isclass(obj):
                continue
            for member, value in vars(obj).items():
                if member.startswith("_"):
                    continue
                if isinstance(value, property):
                    inherited = (inspect.getdoc(getattr(base, member)) for base in obj.__mro__[1:] if hasattr(base, member))
                    documented = value.__doc__ or next(inherited, None)
                elif inspect.isfunction(value) or isinstance(value, classmethod | staticmethod):
                    documented = inspect.getdoc(getattr(obj, member))
                else:
                    continue
                if not documented:
                    missing.append(f"{info.name}.{name}.{member}")
    return missing


def test_every_public_api_has_a_docstring() -> None:
    assert undocumented() == []
