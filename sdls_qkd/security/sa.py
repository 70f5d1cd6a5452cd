"""Security Associations (CCSDS 355.0-B-2 §4.1/§9, SA management data of 355.1).

An SA is the managed state that says how one SPI protects frames: the channels it is bound to
(GVCID, and MAP ID for TC/USLP), its state, its service type, algorithms and keys, the lengths of
the security header and trailer fields, the authentication bit mask (ABM), its anti-replay window,
and the two counters (IV, ARSN) that advance through the counter seam of :mod:`.counters`.

States follow the SDLS SA life cycle; the legal transitions are one table,
:data:`SA_TRANSITIONS`, and anything else raises :class:`~sdls_qkd.errors.IllegalTransition`.

Keys are :class:`SdlsKey` objects: opaque, never in ``repr``/``str``/errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final

from sdls_qkd.errors import IllegalTransition, InvalidConfiguration
from sdls_qkd.security.counters import CounterSource, MemoryCounter
from sdls_qkd.security.suites import Suite, build_suite, cipher_spec, mac_spec

if TYPE_CHECKING:
    from sdls_qkd.framing.channel import Channel

__all__ = [
    "SA_TRANSITIONS",
    "Binding",
    "IvMode",
    "KeyState",
    "SaProcedure",
    "SaState",
    "SdlsKey",
    "SecurityAssociation",
    "ServiceType",
    "binding_for",
]

#: field length limits (octets)
MAX_IV_LENGTH: Final = 32
MAX_SN_LENGTH: Final = 16
MAX_PL_LENGTH: Final = 2
MAX_MAC_LENGTH: Final = 64


class SaState(IntEnum):
    """SA states (CryptoLib numeric codes)."""

    NONE = 0
    UNKEYED = 1
    KEYED = 2
    OPERATIONAL = 3


class SaProcedure(IntEnum):
    """SA management procedures that move an SA between states."""

    CREATE = 1
    REKEY = 2
    START = 3
    STOP = 4
    EXPIRE = 5
    DELETE = 6


#: (state, procedure) -> next state; nothing else is legal (355.0-B-2 SA state diagram)
SA_TRANSITIONS: Final[dict[tuple[SaState, SaProcedure], SaState]] = {
    (SaState.NONE, SaProcedure.CREATE): SaState.UNKEYED,
    (SaState.UNKEYED, SaProcedure.REKEY): SaState.KEYED,
    (SaState.KEYED, SaProcedure.START): SaState.OPERATIONAL,
    (SaState.OPERATIONAL, SaProcedure.STOP): SaState.KEYED,
    (SaState.KEYED, SaProcedure.EXPIRE): SaState.UNKEYED,
    (SaState.UNKEYED, SaProcedure.DELETE): SaState.NONE,
}


class KeyState(IntEnum):
    """Key states of SDLS key management (355.1)."""

    PREACTIVE = 0
    ACTIVE = 1
    DEACTIVATED = 2
    DESTROYED = 3
    CORRUPTED = 4


class ServiceType(IntEnum):
    """SDLS service type of an SA."""

    CLEAR = 0
    AUTHENTICATION = 1
    ENCRYPTION = 2
    AUTHENTICATED_ENCRYPTION = 3

    @classmethod
    def of(cls, *, encrypt: bool, authenticate: bool) -> ServiceType:
        return cls((2 if encrypt else 0) | (1 if authenticate else 0))

    @property
    def encrypt(self) -> bool:
        return bool(self & 2)

    @property
    def authenticate(self) -> bool:
        return bool(self & 1)


class IvMode(IntEnum):
    """How the sender makes IVs: a counter (GCM family, always), or random (CBC default)."""

    COUNTER = 0
    RANDOM = 1


class SdlsKey:
    """A key as the SA holds it: an ID, a state and secret octets nobody prints.

    The material is reachable only through :meth:`secret` (for the suites).  ``repr`` shows the
    ID, size and state.
    """

    __slots__ = ("key_id", "state", "_material")

    def __init__(self, material: bytes, *, key_id: int | str = 0,
                 state: KeyState = KeyState.ACTIVE) -> None:
        if not isinstance(material, bytes | bytearray) or not material:
            raise InvalidConfiguration("key material must be non-empty bytes", field="key")
        self._material = bytes(material)
        self.key_id = key_id
        self.state = KeyState(state)

    def secret(self) -> bytes:
        """The key octets (for cipher objects only; never log them)."""
        return self._material

    def __len__(self) -> int:
        return len(self._material)

    def __repr__(self) -> str:
        return f"SdlsKey(id={self.key_id!r}, {len(self._material) * 8} bits, {self.state.name})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        import hmac

        return isinstance(other, SdlsKey) and hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash(self.key_id)


@dataclass(frozen=True, slots=True)
class Binding:
    """One channel an SA is bound to: frame type, GVCID (TFVN, SCID, VCID), MAP ID or None."""

    frame_type: str
    tfvn: int
    scid: int
    vcid: int
    map_id: int | None = None


def binding_for(channel: Channel) -> Binding:
    """The binding of a channel (its GVCID, plus its MAP ID for TC with segment header / USLP)."""
    map_id = getattr(channel, "map_id", None)
    if channel.frame_type == "TC" and not getattr(channel, "has_segment_header", False):
        map_id = None
    return Binding(channel.frame_type, channel.tfvn, channel.scid, channel.vcid, map_id)


_STATE_NAMES = {s.name: s for s in SaState}
_KEY_STATE_NAMES = {s.name: s for s in KeyState}


def _hex(value: Any, name: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise InvalidConfiguration(f"{name} must be a hex string", field=name)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidConfiguration(f"{name} is not valid hex", field=name) from None


def _int(data: dict[str, Any], name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if value is None:
        if default is None:
            raise InvalidConfiguration(f"SA needs {name}", field=name)
        value = default
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidConfiguration(f"{name} must be an integer, not {value!r}", field=name)
    return value


def _check_len(name: str, value: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi:
        raise InvalidConfiguration(f"{name} must be 0..{hi} octets, not {value!r}", field=name)


#: attributes fixed once an SA exists (the engine precomputes its offsets and masks from them)
_FIXED_ATTRIBUTES: Final = frozenset({
    "spi", "service", "cipher", "mac_algorithm", "iv_length", "transmitted_iv_length",
    "sn_length", "transmitted_sn_length", "pad_length_field_length", "mac_length", "abm",
    "iv_counter", "arsn_counter",
})


class SecurityAssociation:
    """One SDLS security association (mutable: state and counters change).

    Build one directly, from a layout preset (:mod:`.layout`), or from a schema ``sa`` object
    (:meth:`from_schema`).  Only an OPERATIONAL SA protects or accepts traffic.  The layout
    (SPI, service, algorithms, field lengths, ABM) is fixed at construction; state, keys,
    bindings, window and counters change through the methods and setters below.
    """

    _sealed = False

    def __setattr__(self, name: str, value: Any) -> None:
        if self._sealed:
            if name in _FIXED_ATTRIBUTES:
                raise InvalidConfiguration(
                    f"{name} of SA {self.spi} is fixed once the SA exists; create a new SA",
                    field=name)
            if name == "bindings":
                value = frozenset(value)
                object.__setattr__(self, name, value)
                self._drop_plans()
                return
            if name in ("enc_key", "auth_key"):
                object.__setattr__(self, name, value)
                self._reconfigured()
                return
        object.__setattr__(self, name, value)

    def __init__(
        self,
        spi: int,
        *,
        service: ServiceType = ServiceType.AUTHENTICATED_ENCRYPTION,
        cipher: str | None = "AES-256-GCM",
        mac_algorithm: str | None = None,
        enc_key: SdlsKey | None = None,
        auth_key: SdlsKey | None = None,
        iv_length: int = 12,
        transmitted_iv_length: int | None = None,
        sn_length: int = 0,
        transmitted_sn_length: int | None = None,
        pad_length_field_length: int = 0,
        mac_length: int = 16,
        abm: bytes = b"",
        window: int = 5,
        iv: bytes | int = 0,
        arsn: bytes | int = 0,
        state: SaState = SaState.OPERATIONAL,
        bindings: Iterable[Binding] = (),
        iv_mode: IvMode | None = None,
        iv_counter: CounterSource | None = None,
        arsn_counter: CounterSource | None = None,
        validate: bool = True,
    ) -> None:
        if not isinstance(spi, int) or isinstance(spi, bool) or not 0 <= spi <= 0xFFFF:
            raise InvalidConfiguration(f"SPI must be 0..65535, not {spi!r}", field="spi")
        self.spi = spi
        self.service = ServiceType(service)
        cipher_spec(cipher)  # UnsupportedAlgorithm early
        mac_spec(mac_algorithm)
        self.cipher = cipher
        self.mac_algorithm = mac_algorithm
        tiv = iv_length if transmitted_iv_length is None else transmitted_iv_length
        tsn = sn_length if transmitted_sn_length is None else transmitted_sn_length
        _check_len("iv_length", iv_length, MAX_IV_LENGTH)
        _check_len("transmitted_iv_length", tiv, iv_length)
        _check_len("sn_length", sn_length, MAX_SN_LENGTH)
        _check_len("transmitted_sn_length", tsn, sn_length)
        _check_len("pad_length_field_length", pad_length_field_length, MAX_PL_LENGTH)
        _check_len("mac_length", mac_length, MAX_MAC_LENGTH)
        if not isinstance(window, int) or isinstance(window, bool) or window < 0:
            raise InvalidConfiguration(f"window must be an integer >= 0, not {window!r}",
                                       field="window")
        self.iv_length = iv_length
        self.transmitted_iv_length = tiv
        self.sn_length = sn_length
        self.transmitted_sn_length = tsn
        self.pad_length_field_length = pad_length_field_length
        self.mac_length = mac_length
        self.abm = bytes(abm)
        self.window = window
        self.state = SaState(state)
        self.bindings: frozenset[Binding] = frozenset(bindings)
        self.enc_key = enc_key
        self.auth_key = auth_key
        self.iv_counter: CounterSource = iv_counter or MemoryCounter(
            iv_length, _as_int(iv, iv_length, "iv"), name="IV")
        self.arsn_counter: CounterSource = arsn_counter or MemoryCounter(
            sn_length, _as_int(arsn, sn_length, "arsn"), name="ARSN")
        if self.iv_counter.width != iv_length or self.arsn_counter.width != sn_length:
            raise InvalidConfiguration("counter widths must equal iv_length / sn_length")
        self._suite: Suite | None = None
        #: engine plans per (channel, options); cleared whenever the configuration changes
        self._plans: dict[Any, Any] = {}
        self._last_plan: Any = None
        self._iv_mode_arg = iv_mode
        self.iv_mode = IvMode.COUNTER if iv_mode is None else IvMode(iv_mode)
        self._validated = False
        if validate:
            self.validate()
        self._sealed = True

    def validate(self) -> Suite:
        """Check that algorithms, keys, MAC and IV lengths work together; returns the suite.

        Raises InvalidConfiguration / UnsupportedAlgorithm.  Done at construction unless
        ``validate=False`` (then the engine does it on first use, after the frame checks).
        """
        suite = self.suite
        if self._validated:
            return suite
        if self._iv_mode_arg is None:
            self.iv_mode = (IvMode.COUNTER if (suite.counter_iv or not suite.encrypts)
                            else IvMode.RANDOM)
        iv_length = self.iv_length
        if suite.needs_iv and iv_length == 0 and (suite.counter_iv or suite.mac is not None):
            raise InvalidConfiguration(f"{suite!r} needs an IV but iv_length is 0",
                                       field="iv_length")
        spec = suite.cipher_spec
        if spec is not None and suite.needs_iv and iv_length not in spec.iv_lengths:
            raise InvalidConfiguration(
                f"{spec.name} needs an IV of {spec.iv_lengths.start}..{spec.iv_lengths.stop - 1} "
                f"octets, not {iv_length}", field="iv_length")
        self._validated = True
        return suite

    # ------------------------------------------------------------------ derived
    @property
    def encrypt(self) -> bool:
        return self.service.encrypt

    @property
    def authenticate(self) -> bool:
        return self.service.authenticate

    @property
    def suite(self) -> Suite:
        """The cipher objects for the current keys (built once per key set, cached)."""
        suite = self._suite
        if suite is None:
            ek = self.enc_key.secret() if self.enc_key is not None else None
            ak = self.auth_key.secret() if self.auth_key is not None else None
            suite = build_suite(encrypt=self.encrypt, authenticate=self.authenticate,
                                cipher=self.cipher, mac_algorithm=self.mac_algorithm,
                                enc_key=ek, auth_key=ak, mac_length=self.mac_length)
            self._suite = suite
        return suite

    def held_keys(self) -> tuple[SdlsKey, ...]:
        """Every key the SA holds."""
        return tuple(k for k in (self.enc_key, self.auth_key) if k is not None)

    def keys_in_use(self) -> tuple[SdlsKey, ...]:
        """The keys the suite uses (for key-state checks)."""
        suite = self.suite
        keys: list[SdlsKey] = []
        if (suite.aead is not None or suite.cipher is not None) and self.enc_key is not None:
            keys.append(self.enc_key)
        if suite.mac is not None:
            key = self.auth_key if self.auth_key is not None else self.enc_key
            if key is not None:
                keys.append(key)
        return tuple(keys)

    @property
    def iv(self) -> bytes:
        """Full IV held by the SA (b"" when iv_length is 0)."""
        return self.iv_counter.value.to_bytes(self.iv_length, "big")

    @iv.setter
    def iv(self, value: bytes) -> None:
        self.iv_counter.commit(_as_int(value, self.iv_length, "iv"))

    @property
    def arsn(self) -> bytes:
        """Full ARSN held by the SA (b"" when sn_length is 0)."""
        return self.arsn_counter.value.to_bytes(self.sn_length, "big")

    @arsn.setter
    def arsn(self, value: bytes) -> None:
        self.arsn_counter.commit(_as_int(value, self.sn_length, "arsn"))

    @property
    def security_header_length(self) -> int:
        """SPI + transmitted IV + transmitted SN + pad length field (strict layout)."""
        return 2 + self.transmitted_iv_length + self.transmitted_sn_length + \
            self.pad_length_field_length

    def binds(self, binding: Binding) -> bool:
        """True when the SA is bound to this channel (a binding without MAP ID covers all MAPs)."""
        if binding in self.bindings:
            return True
        if binding.map_id is not None:
            return Binding(binding.frame_type, binding.tfvn, binding.scid, binding.vcid,
                           None) in self.bindings
        return False

    def snapshot(self) -> tuple[Any, ...]:
        """Everything mutable, for "a rejected frame changes nothing" checks."""
        keys = tuple((k.key_id, k.state) for k in (self.enc_key, self.auth_key) if k is not None)
        return (self.spi, self.state, self.iv, self.arsn, self.window, self.bindings, keys,
                self.abm)

    # ------------------------------------------------------------------ life cycle
    def _transition(self, procedure: SaProcedure) -> None:
        try:
            self.state = SA_TRANSITIONS[(self.state, procedure)]
        except KeyError:
            raise IllegalTransition(
                f"SA {self.spi}: {procedure.name} is not allowed in state {self.state.name}",
                field="state") from None

    def _drop_plans(self) -> None:
        self._plans.clear()
        self._last_plan = None

    def _reconfigured(self) -> None:
        self._suite = None
        self._validated = False
        self._drop_plans()

    def create(self) -> None:
        """NONE -> UNKEYED."""
        self._transition(SaProcedure.CREATE)

    def rekey(self, enc_key: SdlsKey | None, auth_key: SdlsKey | None = None, *,
              iv: bytes | int | None = None, arsn: bytes | int | None = None) -> None:
        """UNKEYED -> KEYED: assign keys and (optionally) fresh counter values."""
        if (self.state, SaProcedure.REKEY) not in SA_TRANSITIONS:
            self._transition(SaProcedure.REKEY)
        old = (self.enc_key, self.auth_key, self._suite, self._validated)
        self.enc_key, self.auth_key = enc_key, auth_key
        self._suite = None
        self._validated = False
        try:
            self.validate()
        except Exception:
            self.enc_key, self.auth_key, self._suite, self._validated = old
            raise
        self._drop_plans()
        if iv is not None:
            self.iv_counter.commit(_as_int(iv, self.iv_length, "iv"))
        if arsn is not None:
            self.arsn_counter.commit(_as_int(arsn, self.sn_length, "arsn"))
        self._transition(SaProcedure.REKEY)

    def start(self, bindings: Iterable[Binding] | None = None) -> None:
        """KEYED -> OPERATIONAL, bound to ``bindings`` (default: keep the current ones)."""
        if (self.state, SaProcedure.START) not in SA_TRANSITIONS:
            self._transition(SaProcedure.START)
        if bindings is not None:
            self.bindings = frozenset(bindings)
            self._drop_plans()
        self._transition(SaProcedure.START)

    def stop(self) -> None:
        """OPERATIONAL -> KEYED."""
        self._transition(SaProcedure.STOP)

    def expire(self) -> None:
        """KEYED -> UNKEYED: the keys are dropped."""
        self._transition(SaProcedure.EXPIRE)
        self.enc_key = self.auth_key = None
        self._reconfigured()

    def delete(self) -> None:
        """UNKEYED -> NONE."""
        self._transition(SaProcedure.DELETE)

    def set_window(self, window: int) -> None:
        """SDLS EP "Set ARSN Window"."""
        if not isinstance(window, int) or isinstance(window, bool) or window < 0:
            raise InvalidConfiguration(f"window must be an integer >= 0, not {window!r}",
                                       field="window")
        self.window = window

    # ------------------------------------------------------------------ schema
    @classmethod
    def from_schema(cls, sa: dict[str, Any], *, frame_type: str,
                    channel: Channel) -> SecurityAssociation:
        """Build from a ``sdls-vectors/1`` ``sa`` object, bound to ``channel``."""
        if not isinstance(sa, dict):
            raise InvalidConfiguration("sa must be an object")
        if channel.frame_type != frame_type:
            raise InvalidConfiguration(f"channel is {channel.frame_type}, vector is {frame_type}")
        encrypt = bool(sa.get("encrypt", False))
        authenticate = bool(sa.get("authenticate", False))
        key = _hex(sa.get("key_hex"), "key_hex")
        auth = _hex(sa.get("auth_key_hex"), "auth_key_hex")
        key_state = sa.get("key_state", "ACTIVE")
        if key_state not in _KEY_STATE_NAMES:
            raise InvalidConfiguration(f"unknown key_state {key_state!r}", field="key_state")
        kstate = _KEY_STATE_NAMES[key_state]
        state = sa.get("state", "OPERATIONAL")
        if state not in _STATE_NAMES:
            raise InvalidConfiguration(f"unknown state {state!r}", field="state")
        iv_length = _int(sa, "iv_length", 0)
        sn_length = _int(sa, "sn_length", 0)
        if "abm_hex" in sa and sa["abm_hex"] is not None:
            abm = _hex(sa["abm_hex"], "abm_hex")
        elif sa.get("abm_fill") is not None:
            fill = _hex(sa["abm_fill"], "abm_fill")
            if len(fill) != 1:
                raise InvalidConfiguration("abm_fill must be one octet", field="abm_fill")
            abm = fill * _max_frame_length(channel)
        else:
            abm = b""
        iv = _hex(sa.get("iv_hex"), "iv_hex")
        sn = _hex(sa.get("sn_hex"), "sn_hex")
        if len(iv) not in (0, iv_length):
            raise InvalidConfiguration(f"iv_hex has {len(iv)} octets, iv_length is {iv_length}",
                                       field="iv_hex")
        if len(sn) not in (0, sn_length):
            raise InvalidConfiguration(f"sn_hex has {len(sn)} octets, sn_length is {sn_length}",
                                       field="sn_hex")
        return cls(
            _int(sa, "spi"),
            service=ServiceType.of(encrypt=encrypt, authenticate=authenticate),
            cipher=sa.get("cipher"),
            mac_algorithm=sa.get("mac_algorithm"),
            enc_key=SdlsKey(key, key_id="key", state=kstate) if key else None,
            auth_key=SdlsKey(auth, key_id="auth_key", state=kstate) if auth else None,
            iv_length=iv_length,
            transmitted_iv_length=_int(sa, "transmitted_iv_length", iv_length),
            sn_length=sn_length,
            transmitted_sn_length=_int(sa, "transmitted_sn_length", sn_length),
            pad_length_field_length=_int(sa, "pad_length_field_length", 0),
            mac_length=_int(sa, "mac_length", 0),
            abm=abm,
            window=_int(sa, "window", 0),
            iv=iv or 0,
            arsn=sn or 0,
            state=_STATE_NAMES[state],
            bindings=[binding_for(channel)],
            iv_mode=IvMode.COUNTER,
            validate=False,
        )

    def to_schema(self) -> dict[str, Any]:
        """The schema ``sa`` object (keys included: this is for vector generation)."""
        out: dict[str, Any] = {
            "spi": self.spi,
            "encrypt": self.encrypt,
            "authenticate": self.authenticate,
            "cipher": self.cipher,
            "mac_algorithm": self.mac_algorithm,
            "key_hex": self.enc_key.secret().hex() if self.enc_key is not None else None,
        }
        if self.auth_key is not None:
            out["auth_key_hex"] = self.auth_key.secret().hex()
        out.update({
            "iv_length": self.iv_length,
            "transmitted_iv_length": self.transmitted_iv_length,
            "iv_hex": self.iv.hex(),
            "sn_length": self.sn_length,
            "transmitted_sn_length": self.transmitted_sn_length,
            "sn_hex": self.arsn.hex(),
            "window": self.window,
            "pad_length_field_length": self.pad_length_field_length,
            "mac_length": self.mac_length,
        })
        if self.abm and len(set(self.abm)) == 1:
            out["abm_fill"] = f"{self.abm[0]:02x}"
        else:
            out["abm_hex"] = self.abm.hex()
        out["state"] = self.state.name
        keys = [k for k in (self.enc_key, self.auth_key) if k is not None]
        out["key_state"] = keys[0].state.name if keys else "ACTIVE"
        return out

    def __repr__(self) -> str:
        algorithms = "+".join(a for a in (self.cipher, self.mac_algorithm) if a) or "none"
        return (f"SecurityAssociation(spi={self.spi}, {self.state.name}, {self.service.name}, "
                f"{algorithms}, iv={self.transmitted_iv_length}/{self.iv_length}, "
                f"sn={self.transmitted_sn_length}/{self.sn_length}, "
                f"pl={self.pad_length_field_length}, mac={self.mac_length}, "
                f"window={self.window})")

    __str__ = __repr__


def _max_frame_length(channel: Channel) -> int:
    length: int | None = getattr(channel, "frame_length", None)
    if length is None:
        length = int(getattr(channel, "max_frame_length", 1024))
    return length


def _as_int(value: bytes | bytearray | int, width: int, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < (1 << (8 * width)) and not (value == 0 and width == 0):
            raise InvalidConfiguration(f"{name} value does not fit {width} octets", field=name)
        return value
    if isinstance(value, bytes | bytearray):
        if len(value) != width:
            raise InvalidConfiguration(f"{name} must be {width} octets, got {len(value)}",
                                       field=name)
        return int.from_bytes(value, "big")
    raise InvalidConfiguration(f"{name} must be bytes or int", field=name)
