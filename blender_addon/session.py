"""Add-on-wide state for one Blender session: the backend client, its handshake, setup runs.

One backend process serves every job of the session (weights stay loaded between jobs); it
is rebuilt when its configuration changes and stopped when the add-on is disabled, a new file
is loaded, or Blender quits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from .backend_env import EnvironmentSetup, backend_root, find_backend_python
from .client import BackendClient, UserError

ADDON_PACKAGE = __package__
ADDON_DIR = Path(__file__).resolve().parent
PYTHON_ENV = "RFI_BACKEND_PYTHON"
"""Headless runs may name the backend Python here when no preference is saved."""
WEIGHTS_ENV = "RFI_WEIGHTS_DIR"
"""The backend reads the user weights directory from this variable."""


@dataclass(frozen=True)
class BackendSettings:
    """Everything that decides which backend process runs; a change means a new process."""

    python: str = ""
    weights_dir: str = ""
    device: str = "auto"
    keep_alive: bool = True
    keep_results: bool = False
    watchdog_s: float = 600.0
    pip_args: str = ""


_client: BackendClient | None = None
_client_key: tuple[str, str, float] | None = None
handshake: dict[str, Any] | None = None
"""The last ``hello`` seen, kept after the backend stops so panels can still list the weights."""
setup_run: EnvironmentSetup | None = None


def preferences() -> Any | None:
    """The add-on preferences, or None when the add-on was loaded outside Blender's add-on system."""
    addon = bpy.context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


def user_dir(*parts: str) -> Path:
    """A writable folder for this add-on's data (never the add-on folder, which may be read-only)."""
    try:
        base = Path(bpy.utils.extension_path_user(ADDON_PACKAGE, create=True))
    except ValueError:  # loaded from a source checkout, not as an extension
        base = Path(bpy.utils.user_resource("DATAFILES", path="reconstruct_from_image", create=True))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def backend_settings() -> BackendSettings:
    prefs = preferences()
    if prefs is None:
        return BackendSettings(
            python=os.environ.get(PYTHON_ENV, ""), weights_dir=os.environ.get(WEIGHTS_ENV, "")
        )
    return BackendSettings(
        python=bpy.path.abspath(prefs.backend_python)
        if prefs.backend_python
        else os.environ.get(PYTHON_ENV, ""),
        weights_dir=bpy.path.abspath(prefs.weights_dir) if prefs.weights_dir else "",
        device=prefs.device,
        keep_alive=prefs.keep_alive,
        keep_results=prefs.keep_results,
        watchdog_s=float(prefs.watchdog_s),
        pip_args=prefs.pip_args,
    )


def resolve_python(settings: BackendSettings) -> Path:
    python = find_backend_python(settings.python, ADDON_DIR, user_dir())
    if python is None:
        raise UserError(
            "no_backend_python",
            "no backend Python found",
            "press 'Set up backend' in the add-on preferences, or set the backend Python",
        )
    return python


def client(settings: BackendSettings | None = None) -> BackendClient:
    """The session's backend client, rebuilt (old process stopped) when its configuration changed."""
    global _client, _client_key
    settings = settings or backend_settings()
    python = resolve_python(settings)
    key = (str(python), settings.weights_dir, settings.watchdog_s)
    busy = _client is not None and _client.job is not None and not _client.job.finished
    if _client is None or (key != _client_key and not busy):  # never restart under a running job
        if _client is not None:
            _client.stop()
        env = {WEIGHTS_ENV: settings.weights_dir} if settings.weights_dir else {}
        _client = BackendClient(
            python,
            backend_root(ADDON_DIR),
            log_path=user_dir() / "backend.log",
            env=env,
            watchdog_s=settings.watchdog_s,
        )
        _client_key = key
    return _client


def current_client() -> BackendClient | None:
    return _client


def remember_handshake(hello: dict[str, Any] | None) -> None:
    global handshake
    if hello is not None:
        handshake = hello


def weights_for_method(method: str) -> list[dict[str, Any]]:
    """Registry entries from the last handshake for one method (empty before the first handshake)."""
    entries = (handshake or {}).get("weights") or []
    return [e for e in entries if isinstance(e, dict) and e.get("method") == method and "id" in e]


def terms_off(method: str) -> list[dict[str, Any]]:
    """The published loss terms of ``method`` that the last handshake said will not run (their
    weights are not imported); empty before the first handshake."""
    terms = (handshake or {}).get("published_terms") or []
    return [t for t in terms if isinstance(t, dict) and t.get("method") == method and not t.get("on")]


def job_finished(settings: BackendSettings) -> None:
    """Free the backend after a job unless it should stay warm for the next one."""
    if not settings.keep_alive and _client is not None:
        _client.stop()


def shutdown() -> None:
    """Stop the backend now: add-on disabled, new file loaded, or Blender quitting."""
    global _client, _client_key
    if _client is not None:
        _client.kill()
    _client = _client_key = None


@bpy.app.handlers.persistent
def _on_load_pre(*_args: Any) -> None:
    """Loading a file drops modal operators, so a running job would have nobody to report to."""
    if _client is not None and _client.job is not None and not _client.job.finished:
        shutdown()


@bpy.app.handlers.persistent
def _on_load_post(*_args: Any) -> None:
    """A window manager kept across the load must not show a job that no longer exists."""
    if _client is not None and _client.job is not None and not _client.job.finished:
        return
    for window_manager in bpy.data.window_managers:
        if hasattr(window_manager, "rfi_runtime"):
            window_manager.rfi_runtime.running = False


def register() -> None:
    bpy.app.handlers.load_pre.append(_on_load_pre)
    bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    for handlers, handler in (
        (bpy.app.handlers.load_pre, _on_load_pre),
        (bpy.app.handlers.load_post, _on_load_post),
    ):
        if handler in handlers:
            handlers.remove(handler)
    shutdown()
