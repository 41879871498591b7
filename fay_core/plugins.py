"""Plugin discovery and the registry of what plugins provide.

Plugins are found through the ``fay`` entry-point group; Fay's own built-ins (``plugins/``) register through the
same group. A plugin that fails to import or register is recorded with its error and skipped: the others load.
``FAY_LOAD_PLUGINS=a,b`` (or ``Settings.load_plugins``) loads only the named plugins.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from pydantic import BaseModel

from . import hookspecs
from .errors import ConfigError, EngineUnavailable, PluginError
from .redaction import Detector, Redactor
from .settings import Settings, load_settings

log = logging.getLogger(__name__)

GROUP = "fay"


@dataclass
class PluginInfo:
    """What ``fay plugins`` shows for one plugin."""

    name: str
    module: str
    version: str = ""
    distribution: str = ""
    hooks: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Registration:
    """An engine factory and the plugin (and settings section) it came from."""

    name: str
    factory: Callable[..., Any]
    plugin: str
    settings: str | None = None
    #: languages the engine handles; empty: any
    languages: tuple[str, ...] = ()
    #: the engine needs the internet
    online: bool = False
    #: ``auto`` tries higher priorities first
    priority: int = 0

    def speaks(self, language: str | None) -> bool:
        """Whether the engine handles ``language`` (``None`` or ``auto``: any engine does)."""
        return not self.languages or language in (None, "", "auto") or language in self.languages


KINDS = ("asr", "tts", "vad", "turn", "renderer", "embedder", "reranker", "vision")
_KIND_HOOKS = {
    "asr": "register_asr_engines",
    "tts": "register_tts_engines",
    "vad": "register_vad",
    "turn": "register_turn_detectors",
    "renderer": "register_avatar_renderers",
    "embedder": "register_embedders",
    "reranker": "register_rerankers",
    "vision": "register_vision_processors",
}


class Plugins:
    """The loaded plugins and everything they registered."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.engines: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self.tools: dict[str, Any] = {}
        self.loaders: dict[str, Callable[..., Any]] = {}
        #: personal-data detectors plugins registered (``register_redactors``), in plugin order
        self.detectors: list[Detector] = []
        self.settings_models: dict[str, type[BaseModel]] = {}
        self._instances: dict[tuple[str, str], Any] = {}

    # --- loading ----------------------------------------------------------------------------------------

    def load(self, only: str | None = None) -> Plugins:
        """Load entry-point plugins (only the comma-separated names in ``only`` if given) and collect hooks."""
        only = only if only is not None else os.environ.get("FAY_LOAD_PLUGINS") or (
            self.settings.load_plugins if self.settings else None
        )
        wanted = {n.strip() for n in only.split(",") if n.strip()} if only else None
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
            if wanted is not None and ep.name not in wanted:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                version=dist.version if dist else "",
                distribution=dist.metadata["Name"] if dist else "",
            )
            self.infos.append(info)
            try:
                obj = ep.load()
                self.pm.register(obj, name=ep.name)
            except Exception as exc:  # a broken plugin must not stop the others
                info.error = f"{type(exc).__name__}: {exc}"
                log.error("plugin %r (%s) failed to load: %s", ep.name, ep.value, info.error)
        if wanted:
            for missing in sorted(wanted - {i.name for i in self.infos}):
                self.infos.append(PluginInfo(name=missing, module="", error="not installed (no such entry point)"))
        self._collect()
        return self

    def register(self, obj: Any, name: str) -> None:
        """Register a plugin object directly (tests, embedding apps) and collect what it provides."""
        self.pm.register(obj, name=name)
        self.infos.append(PluginInfo(name=name, module=getattr(obj, "__name__", type(obj).__name__)))
        self._collect()

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.infos = [i for i in self.infos if i.name != name]
        self._collect()

    def _collect(self) -> None:
        for kind in KINDS:
            self.engines[kind].clear()
        self.tools.clear()
        self.loaders.clear()
        self.detectors.clear()
        self.settings_models.clear()
        self._instances.clear()
        for info in self.infos:
            if info.error:
                continue
            plugin = self.pm.get_plugin(info.name)
            if plugin is None:
                continue
            info.hooks = sorted(self._hooks_of(plugin))
            info.provides = []
            try:
                self._collect_from(info, plugin)
            except Exception as exc:
                info.error = f"{type(exc).__name__} while registering: {exc}"
                log.error("plugin %r failed to register: %s", info.name, info.error)

    def _call_one(self, plugin: Any, hook: str, **kwargs: Any) -> None:
        # Called per plugin (not through pm.hook) so that each registration is attributed to its plugin;
        # only functions pluggy accepted as hookimpls of this plugin are called.
        if hook in self._hooks_of(plugin):
            getattr(plugin, hook)(**kwargs)

    def _hooks_of(self, plugin: Any) -> set[str]:
        return {h.name for h in self.pm.get_hookcallers(plugin) or []}

    def _collect_from(self, info: PluginInfo, plugin: Any) -> None:
        def register_settings(name: str, model: type[BaseModel]) -> None:
            self.settings_models[name] = model

        self._call_one(plugin, "register_settings", register=register_settings)

        for kind, hook in _KIND_HOOKS.items():

            def register(
                name: str,
                factory: Callable[..., Any],
                settings: str | None = None,
                *,
                languages: Sequence[str] = (),
                online: bool = False,
                priority: int = 0,
                _k: str = kind,
            ) -> None:
                if name in self.engines[_k]:
                    raise PluginError(
                        f"{_k} {name!r} is registered twice: by {self.engines[_k][name].plugin!r} and {info.name!r}"
                    )
                self.engines[_k][name] = Registration(
                    name, factory, info.name, settings, tuple(languages), bool(online), int(priority)
                )
                info.provides.append(f"{_k}:{name}")

            self._call_one(plugin, hook, register=register)

        def register_tool(tool: Any) -> None:
            tool = as_tool(tool)
            if tool.name in self.tools:
                raise PluginError(f"tool {tool.name!r} is registered twice (second time by {info.name!r})")
            self.tools[tool.name] = tool
            info.provides.append(f"tool:{tool.name}")

        self._call_one(plugin, "register_tools", register=register_tool)

        def register_loader(suffixes: tuple[str, ...] | str, loader: Callable[..., Any]) -> None:
            for suffix in (suffixes,) if isinstance(suffixes, str) else suffixes:
                self.loaders[suffix.lower()] = loader
                info.provides.append(f"loader:{suffix}")

        self._call_one(plugin, "register_knowledge_loaders", register=register_loader)

        def register_redactor(detector: Detector) -> None:
            if not isinstance(detector, Detector):
                raise PluginError(f"cannot register {detector!r} as a redactor: give an object with a 'kind' and a "
                                  "'find(text)' method (fay_core.redaction.Detector)")
            self.detectors.append(detector)
            info.provides.append(f"redactor:{detector.kind}")

        self._call_one(plugin, "register_redactors", register=register_redactor)

    # --- use --------------------------------------------------------------------------------------------

    def check_settings(self) -> None:
        """Validate every plugin's settings section now; raise :class:`ConfigError` naming the bad setting."""
        if self.settings is None:
            return
        for name, model in self.settings_models.items():
            self.settings.plugin(name, model)
        unknown = set(self.settings.plugins) - set(self.settings_models)
        if unknown:
            raise ConfigError(
                f"settings for unknown plugin(s) {', '.join(sorted(unknown))}: "
                f"known plugin settings are {', '.join(sorted(self.settings_models)) or 'none'}"
            )

    def names(self, kind: str) -> list[str]:
        return sorted(self.engines[kind])

    def candidates(self, kind: str, language: str | None = None, *, online: bool = True) -> list[Registration]:
        """The engines of ``kind`` that ``auto`` may pick for ``language``, best first (priority, then name).

        ``online=False`` leaves out engines that need the internet.
        """
        regs = [r for r in self.engines[kind].values() if r.speaks(language) and (online or not r.online)]
        return sorted(regs, key=lambda r: (-r.priority, r.name))

    def pick(self, kind: str, wanted: str = "auto", language: str | None = None, *, online: bool = True) -> Any:
        """The engine ``wanted`` of ``kind``; for ``auto``, the first of :meth:`candidates` that can run here.

        A candidate whose factory raises :class:`~fay_core.errors.EngineUnavailable` (its package or model is
        missing) is skipped; if none can run, the error lists why each one could not.
        """
        if wanted != "auto":
            return self.engine(kind, wanted)
        reasons: list[str] = []
        for reg in self.candidates(kind, language, online=online):
            try:
                return self.engine(kind, reg.name)
            except EngineUnavailable as exc:
                reasons.append(f"{reg.name}: {exc}")
        for_lang = f" for language {language!r}" if language not in (None, "", "auto") else ""
        detail = "; ".join(reasons) if reasons else f"none is registered{for_lang}"
        raise EngineUnavailable(
            f"no {kind} engine can run here ({detail}): install one, e.g. pip install 'fay[offline]'"
        )

    def engine(self, kind: str, name: str) -> Any:
        """The engine ``name`` of ``kind`` (``asr``, ``tts``, ...), created once and shared."""
        key = (kind, name)
        if key in self._instances:
            return self._instances[key]
        reg = self.engines[kind].get(name)
        if reg is None:
            known = ", ".join(self.names(kind)) or "none installed"
            raise PluginError(f"no {kind} engine named {name!r} (registered: {known})")
        config = None
        if reg.settings and reg.settings in self.settings_models:
            config = (self.settings or load_settings()).plugin(reg.settings, self.settings_models[reg.settings])
        params = inspect.signature(reg.factory).parameters
        instance = reg.factory(config) if params else reg.factory()
        self._instances[key] = instance
        return instance

    def tools_for(self, names: list[str]) -> list[Any]:
        """The tools named by a persona, in order; raise :class:`PluginError` for a name nobody registered."""
        missing = [n for n in names if n not in self.tools]
        if missing:
            known = ", ".join(sorted(self.tools)) or "none"
            raise PluginError(f"unknown tool(s) {', '.join(missing)} (registered: {known})")
        return [self.tools[n] for n in names]

    def redactor(self) -> Redactor:
        """The redactor the settings ask for (``redaction``): the chosen built-ins, then the plugins' detectors.

        With ``redaction.enabled`` false it masks nothing.
        """
        config = (self.settings or load_settings()).redaction
        if not config.enabled:
            return Redactor([])
        return Redactor.builtin(config.kinds, extra=self.detectors)

    def hook_has_impls(self, hook: str) -> bool:
        return bool(getattr(self.pm.hook, hook).get_hookimpls())


def as_tool(obj: Any) -> Any:
    """A langchain tool from a ``BaseTool`` or a typed, documented function."""
    from langchain_core.tools import BaseTool, StructuredTool

    if isinstance(obj, BaseTool):
        return obj
    if callable(obj):
        if not (obj.__doc__ or "").strip():
            raise PluginError(f"tool {getattr(obj, '__name__', obj)!r} needs a docstring: it is the LLM's description")
        if inspect.iscoroutinefunction(obj):
            return StructuredTool.from_function(coroutine=obj, name=obj.__name__)
        return StructuredTool.from_function(func=obj, name=obj.__name__)
    raise PluginError(f"cannot register {obj!r} as a tool: give a langchain BaseTool or a function")


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable (lifecycle hooks may return either)."""
    if inspect.isawaitable(value):
        return await value
    return value
