"""Bridge DTMF features as Asterisk 22 plays them: the digits a bridged channel keys are matched
against its feature hooks (the attended transfer of ``hil.pbx.transfer``, and features.conf's
``[applicationmap]``, Asterisk's DynamicFeatures, which runs the edge's FastAGI on a desk phone's
own channel while the call stays up).

derived from source: main/bridge_channel.c ``ast_bridge_channel_feature_digit`` (matching) and
``ast_bridge_channel_run_app`` / ``run_app_helper``, main/bridge_basic.c ``dynamic_dtmf_hook_trip``
/ ``dynamic_dtmf_hook_callback`` / ``setup_bridge_features_dynamic``, main/features_config.c
``applicationmap_handler`` / ``ast_get_chan_applicationmap``, res/res_agi.c ``agi_exec_full``,
main/pbx_app.c ``pbx_exec``.

Matching: digits collect while they prefix a hook's code (``featuredigittimeout`` drops a partial
one); a full code fires the hook; anything else is flushed. Outside a bridge nothing listens.

The applicationmap, the simulator's features.conf::

    [applicationmap]
    edge-record => *3,self,AGI,agi://EDGE:4573/record-toggle

is on for every bridged desk phone (a real box needs ``DYNAMIC_FEATURES=edge-record`` on the
channel before it enters the bridge). ``PbxSimulator(applicationmap=...)`` replaces it. When the
phone keys ``*3``:

1. ``DYNAMIC_FEATURENAME`` and ``DYNAMIC_WHO_ACTIVATED`` (the phone's channel) are set (VarSet);
2. the phone's channel is *suspended* in its bridge, not taken out of it: no BridgeLeave/Enter,
   no Newexten (``pbx_exec`` changes only the application, not context/exten/priority), no hold.
   Neither side hears the other (the bridge drops voice frames to a suspended channel and nobody
   reads its own); the caller hears silence, the agent only what the AGI plays;
3. ``AGI(agi://EDGE:4573/record-toggle)`` runs on the phone's channel: the usual FastAGI env block
   (``agi_channel`` the phone's channel, ``agi_callerid`` its extension, no ``agi_arg_N``);
4. when the edge closes the socket, AGI returns 0 (``AGISTATUS`` SUCCESS, or FAILURE when the edge
   could not be reached): the channel is back in the call. Had the channel hung up, AGI returns
   -1 and it leaves the bridge, which ends the call (a basic bridge).

During an attended transfer the applicationmap hooks are gone (they are added with
``AST_BRIDGE_HOOK_REMOVE_ON_PERSONALITY_CHANGE``): ``*3`` is then atxferthreeway. Not modelled:
``peer`` activation, the MOH class (5th field), passing unmatched digits through to the peer, and
the caller hanging up while the AGI runs (Asterisk lets the AGI run on and hangs the agent up when
it ends; here Dial hangs the agent up at once and the edge gets ``HANGUP``).

Records: ``dtmf`` per digit; ``feature`` (call, channel, code, name, app, script, what ``started``
or ``returned``, and on return ``agistatus``).
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from hil.pbx.agi_client import AgiSession
from hil.pbx.channels import Channel
from hil.pbx.errors import ScriptError
from hil.pbx.scripts import DTMF_KEYS

if TYPE_CHECKING:
    from hil.pbx.pbx import Pbx

log = logging.getLogger(__name__)

FEATURE_ATXFER = "*2"   # features.conf [featuremap] atxfer; Asterisk ships it empty (README)
FEATURE_DIGIT_MS = 1000  # [general] featuredigittimeout
SELF = "self"
DEFAULT_APPLICATIONMAP: dict[str, tuple[str, ...]] = {"*3": ("record-toggle", SELF, "edge-record")}

Hooks = dict[str, Callable[[], None]]


# --- the applicationmap ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DynamicFeature:
    """One ``[applicationmap]`` line: ``<name> => <code>,self,AGI,agi://EDGE:4573/<script>``."""
    name: str
    code: str
    script: str
    activate_on: str = SELF


def parse_applicationmap(spec: Mapping[str, str | Sequence[str]]) -> dict[str, DynamicFeature]:
    """``{"*3": "record-toggle"}`` or ``{"*3": (script, "self"[, name])}``; the name defaults to
    ``edge-<script>``. Raises ``ScriptError`` naming the bad entry."""
    features: dict[str, DynamicFeature] = {}
    for raw, value in spec.items():
        code, where = str(raw), f"applicationmap[{raw!r}]"
        parts = (value,) if isinstance(value, str) else tuple(value)
        if not code or any(key not in DTMF_KEYS for key in code):
            raise ScriptError(f"{where}: expected DTMF keys ({DTMF_KEYS})")
        if not 1 <= len(parts) <= 3 or not all(isinstance(p, str) and p for p in parts):
            raise ScriptError(f"{where}: expected a script name or (script, activate_on[, name])")
        script, activate_on, name = (*parts, SELF, f"edge-{parts[0]}")[:3]
        if activate_on != SELF:
            raise ScriptError(f"{where}: activate_on {activate_on!r} is not modelled (only {SELF!r})")
        for other in [*features, FEATURE_ATXFER]:
            if other and (other.startswith(code) or code.startswith(other)):
                raise ScriptError(f"{where}: clashes with the feature code {other}")
        features[code] = DynamicFeature(name, code, script, activate_on)
    return features


class _State:
    def __init__(self) -> None:
        self.applicationmap = parse_applicationmap(DEFAULT_APPLICATIONMAP)
        self.buffers: dict[str, str] = {}            # channel name -> digits collected so far
        self.running: dict[str, FeatureAgi] = {}     # channel name -> the feature AGI it runs


_states: "weakref.WeakKeyDictionary[Pbx, _State]" = weakref.WeakKeyDictionary()


def _state(pbx: "Pbx") -> _State:
    state = _states.get(pbx)
    if state is None:
        state = _states[pbx] = _State()
    return state


def configure(pbx: "Pbx", applicationmap: Mapping[str, str | Sequence[str]] | None) -> None:
    """The simulator's features.conf ``[applicationmap]`` (``None``: the default, ``{}``: none)."""
    if applicationmap is not None:
        _state(pbx).applicationmap = parse_applicationmap(applicationmap)


# --- digits in -------------------------------------------------------------------------------------
def queue_dtmf(pbx: "Pbx", ch: Channel, digits: str, duration_ms: int = 0) -> None:
    """Digits queued on the channel's read side (Atxfer, PlayDTMF ``Receive: yes``). derived from
    source: main/channel.c __ast_read reports a lone DTMF END frame as ``DTMFEnd`` only, with the
    frame's length (0 for Atxfer), then emulates the BEGIN it never had without an event."""
    with pbx.lock:
        for digit in digits:
            if ch.hungup:
                return
            pbx.emit(pbx.events.dtmf_end(ch, digit, "Received", duration_ms))
            _received(pbx, ch, digit)


def press(pbx: "Pbx", ch: Channel, digits: str, gap_ms: int = 150) -> None:
    """The desk phone on ``ch`` keys ``digits`` (RFC 4733: DTMFBegin and DTMFEnd, 100 ms each)."""
    def key(digit: str) -> None:
        if ch.hungup:
            return
        pbx.emit(pbx.events.dtmf_begin(ch, digit, "Received"))
        pbx.emit(pbx.events.dtmf_end(ch, digit, "Received"))
        _received(pbx, ch, digit)
    for i, digit in enumerate(digits):
        pbx.later(i * gap_ms, lambda d=digit: key(d), "phone-dtmf")


def _received(pbx: "Pbx", ch: Channel, digit: str) -> None:
    """A digit read from ``ch``: an AGI command reading gets it, a bridge matches its features."""
    heard = ch.dtmf_listening
    if heard:
        ch.dtmf.append(digit)
    pbx.record("dtmf", call=ch.call, channel=ch.name, digit=digit, direction="Received", heard=heard)
    _feature_digit(pbx, ch, digit)
    pbx.changed()


def _feature_digit(pbx: "Pbx", ch: Channel, digit: str) -> None:
    from hil.pbx import transfer  # transfer.py imports this module

    state = _state(pbx)
    if ch.name in state.running:  # suspended: the feature's application reads the digits
        return
    if transfer.collect_digit(pbx, ch, digit):
        return
    hooks = bridge_hooks(pbx, ch)
    buffer = state.buffers.pop(ch.name, "") + digit
    if buffer in hooks:
        hooks[buffer]()
    elif any(code.startswith(buffer) for code in hooks):
        state.buffers[ch.name] = buffer

        def expire() -> None:  # featuredigittimeout: a partial code is dropped
            if state.buffers.get(ch.name) == buffer:
                del state.buffers[ch.name]
        pbx.later(FEATURE_DIGIT_MS, expire, "feature-digits")


def bridge_hooks(pbx: "Pbx", ch: Channel) -> Hooks:
    """The DTMF hooks ``ch`` has now: an attended transfer's personality replaces them all;
    otherwise the builtin ``atxfer`` and, on a desk phone, the applicationmap."""
    from hil.pbx import transfer  # transfer.py imports this module

    during_transfer = transfer.personality_hooks(pbx, ch)
    if during_transfer is not None:
        return during_transfer
    if ch.bridge is None:
        return {}
    hooks = transfer.builtin_hooks(pbx, ch)
    if ch.tech == "PJSIP" and ch.extension in pbx.world.phones:
        for code, feature in _state(pbx).applicationmap.items():
            hooks.setdefault(code, lambda f=feature: FeatureAgi(pbx, ch, f).start())
    return hooks


# --- the feature's application ---------------------------------------------------------------------
class FeatureAgi(AgiSession):
    """``AGI(agi://EDGE:4573/<script>)`` run by a dynamic feature on the channel that keyed it. The
    same FastAGI session as the dialplan's, but when it ends the channel goes back to its call
    instead of the dialplan's ``Hangup()``."""

    def __init__(self, pbx: "Pbx", ch: Channel, feature: DynamicFeature) -> None:
        super().__init__(pbx, ch, feature.script, [], pbx.agi_host, pbx.agi_port)
        self.feature = feature
        self.reset_after = pbx.agi_reset_after.get(ch.call, pbx.agi_reset_after.get(None))
        self.outer: AgiSession | None = None   # the AGI the channel was already in (a phone's dial)
        self.saved_app = ("", "")

    @property
    def app_data(self) -> str:
        return f"agi://{self.host}:{self.port}/{self.script}"

    def start(self) -> None:
        """dynamic_dtmf_hook_trip on ``self``, under the lock: variables, suspend, ``pbx_exec``."""
        pbx, ch = self.pbx, self.channel
        pbx.set_var(ch, "DYNAMIC_FEATURENAME", self.feature.name)
        pbx.set_var(ch, "DYNAMIC_WHO_ACTIVATED", ch.name)
        _state(pbx).running[ch.name] = self
        pbx.audio.set_held(ch.name, True)  # suspended: neither hears nor is heard by its bridge
        self.saved_app = (ch.application, ch.app_data)
        ch.application, ch.app_data = "AGI", self.app_data
        self.outer = pbx.agi_sessions.get(ch.name)
        pbx.agi_sessions[ch.name] = self
        self._record("started")
        pbx.spawn(self.run, f"feature-{ch.name}")
        pbx.changed()

    def _dialplan_continues(self, how: str) -> None:
        """AGI returned: 0 unless the channel hung up (res_agi.c agi_exec_full), so the channel
        is unsuspended; a Redirect during the feature takes it to its new place instead."""
        from hil.pbx.redirect import run_target

        pbx, ch = self.pbx, self.channel
        with pbx.lock:
            if pbx.agi_sessions.get(ch.name) is self:
                if self.outer is not None and not self.outer.closed:
                    pbx.agi_sessions[ch.name] = self.outer
                else:
                    del pbx.agi_sessions[ch.name]
            target = ch.redirect if not ch.hungup else None
            self._returned(how)
        if target is not None:
            run_target(pbx, ch, *target)

    def _returned(self, how: str) -> None:
        from hil.pbx import transfer  # transfer.py imports this module

        pbx, ch = self.pbx, self.channel
        _state(pbx).running.pop(ch.name, None)
        ch.application, ch.app_data = self.saved_app
        if ch.hungup or ch.redirect is not None:
            status = "HANGUP"
        else:
            status = "FAILURE" if how == "connect failed" else "SUCCESS"
            pbx.set_var(ch, "AGISTATUS", status)
            pbx.audio.set_held(ch.name, transfer.phone_holds(pbx, ch))
            if ch.bridge is None:  # its call ended meanwhile: an imparted channel hangs up
                pbx.hangup(ch, 16, by="system", soft=True)
        self._record("returned", agistatus=status)
        pbx.changed()

    def _record(self, what: str, **data: object) -> None:
        f, ch = self.feature, self.channel
        self.pbx.record("feature", call=ch.call, channel=ch.name, code=f.code, name=f.name, app="AGI",
                        script=f.script, what=what, **data)
