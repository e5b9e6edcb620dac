"""What a printer's SNMP agent says, read the way RFC 3805 (Printer-MIB) and RFC 2790 (Host
Resources MIB) define it: device status, the detected-error bits, supplies with their special
values, the life page counter, vendor counters and alerts. Pure functions over plain values
(ints, bytes, None for an object the agent does not have): no I/O, no pysnmp.

`poll_plan(device_index, vendors)` lists the objects one poll asks for (scalars and table
columns, numeric OIDs: no MIB is compiled into pysnmp); `read_poll(plan, scalars, tables)`
turns the answers into a `Reading`. A missing object is reported as missing ("not reported"),
never replaced by a made-up value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcnet.devices._records import Alert, Counters, DeviceState, DeviceStatus, Supply

OID = tuple[int, ...]


def oid(text: str) -> OID:
    return tuple(int(part) for part in text.strip(".").split("."))


def oid_text(o: OID) -> str:
    return ".".join(map(str, o))


HR_DEVICE_STATUS = oid("1.3.6.1.2.1.25.3.2.1.5")
HR_PRINTER_STATUS = oid("1.3.6.1.2.1.25.3.5.1.1")
HR_PRINTER_ERROR_STATE = oid("1.3.6.1.2.1.25.3.5.1.2")
PRT_MARKER_LIFE_COUNT = oid("1.3.6.1.2.1.43.10.2.1.4")
PRT_SUPPLIES = oid("1.3.6.1.2.1.43.11.1.1")
PRT_ALERTS = oid("1.3.6.1.2.1.43.18.1.1")

HR_DEVICE_STATUS_NAMES = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
HR_PRINTER_STATUS_NAMES = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}

#: hrPrinterDetectedErrorState bits, most significant bit of the first octet first.
ERROR_BITS = (
    "lowPaper", "noPaper", "lowToner", "noToner", "doorOpen", "jammed", "offline",
    "serviceRequested", "inputTrayMissing", "outputTrayMissing", "markerSupplyMissing",
    "outputNearFull", "outputFull", "inputTrayEmpty", "overduePreventMaint",
)
#: The bits that leave a printer able to print (a warning); every other bit stops it.
MILD_BITS = frozenset({"lowPaper", "lowToner", "outputNearFull", "inputTrayEmpty",
                       "overduePreventMaint"})

SUPPLY_TYPES = {
    1: "other", 2: "unknown", 3: "toner", 4: "wasteToner", 5: "ink", 6: "inkCartridge",
    7: "inkRibbon", 8: "wasteInk", 9: "opc", 10: "developer", 11: "fuserOil", 12: "solidWax",
    13: "ribbonWax", 14: "wasteWax", 15: "fuser", 16: "coronaWire", 17: "fuserOilWick",
    18: "cleanerUnit", 19: "fuserCleaningPad", 20: "transferUnit", 21: "tonerCartridge",
    22: "fuserOiler", 23: "water", 24: "wasteWater", 25: "glueWaterAdditive", 26: "wastePaper",
    27: "bindingSupply", 28: "bandingSupply", 29: "stitchingWire", 30: "shrinkWrap",
    31: "paperWrap", 32: "staples", 33: "inserts", 34: "covers",
}

ALERT_SEVERITIES = {1: "other", 3: "critical", 4: "warning", 5: "warningBinaryChangeEvent"}
ALERT_GROUPS = {
    1: "other", 3: "hostResourcesMIBStorageTable", 4: "hostResourcesMIBDeviceTable",
    5: "generalPrinter", 6: "cover", 7: "localization", 8: "input", 9: "output", 10: "marker",
    11: "markerSupplies", 12: "markerColorant", 13: "mediaPath", 14: "channel",
    15: "interpreter", 16: "consoleDisplayBuffer", 17: "consoleLights", 18: "alert",
    30: "finDevice", 31: "finSupply", 32: "finSupplyMediaInput", 33: "finAttribute",
}
ALERT_CODES = {
    1: "other", 2: "unknown", 3: "coverOpen", 4: "coverClosed", 5: "interlockOpen",
    6: "interlockClosed", 7: "configurationChange", 8: "jam", 9: "subunitMissing",
    10: "subunitLifeAlmostOver", 11: "subunitLifeOver", 12: "subunitAlmostEmpty",
    13: "subunitEmpty", 14: "subunitAlmostFull", 15: "subunitFull", 16: "subunitNearLimit",
    17: "subunitAtLimit", 18: "subunitOpened", 19: "subunitClosed", 20: "subunitTurnedOn",
    21: "subunitTurnedOff", 22: "subunitOffline", 23: "subunitPowerSaver",
    24: "subunitWarmingUp", 25: "subunitAdded", 26: "subunitRemoved",
    29: "subunitRecoverableFailure", 30: "subunitUnrecoverableFailure",
    33: "subunitMotorFailure", 34: "subunitMemoryExhausted", 501: "doorOpen", 502: "doorClosed",
    503: "poweredUp", 504: "poweredDown", 507: "printerReadyToPrint",
    801: "inputMediaTrayMissing", 807: "inputMediaSupplyLow", 808: "inputMediaSupplyEmpty",
    809: "inputMediaChangeRequest", 810: "inputManualInputRequest",
    901: "outputMediaTrayMissing", 902: "outputMediaTrayAlmostFull", 903: "outputMediaTrayFull",
    1001: "markerFuserUnderTemperature", 1002: "markerFuserOverTemperature",
    1101: "markerTonerEmpty", 1102: "markerInkEmpty", 1104: "markerTonerAlmostEmpty",
    1105: "markerInkAlmostEmpty", 1107: "markerWasteTonerReceptacleAlmostFull",
    1109: "markerWasteTonerReceptacleFull", 1111: "markerOpcLifeAlmostOver",
    1112: "markerOpcLifeOver", 1113: "markerDeveloperAlmostEmpty", 1114: "markerDeveloperEmpty",
    1115: "markerTonerCartridgeMissing", 1301: "mediaPathMediaTrayMissing",
    1302: "mediaPathMediaTrayAlmostFull", 1303: "mediaPathMediaTrayFull",
    1304: "mediaPathCannotDuplexMediaSelected",
}


# --- vendor counters -----------------------------------------------------------------------------

@dataclass(frozen=True)
class VendorCounters:
    """A vendor's enterprise page counters: counter name -> OID."""

    name: str
    counters: dict[str, OID]


_SHARP = oid("1.3.6.1.4.1.2385.1.1.19.2.1.3")
#: Sharp MX series (the recording's MX-3570N): prints, copies, totals and scans split into
#: black & white (.61, scanner .51) and full colour (.63, scanner .53).
SHARP = VendorCounters("sharp", {
    "print.mono": _SHARP + (1, 4, 61), "print.colour": _SHARP + (1, 4, 63),
    "copy.mono": _SHARP + (4, 4, 61), "copy.colour": _SHARP + (4, 4, 63),
    "total.mono": _SHARP + (5, 4, 61), "total.colour": _SHARP + (5, 4, 63),
    "scan.mono": _SHARP + (7, 4, 51), "scan.colour": _SHARP + (7, 4, 53),
})
VENDORS = {v.name: v for v in (SHARP,)}


# --- what to ask --------------------------------------------------------------------------------

SUPPLY_COLUMNS = {"type": 5, "description": 6, "max_capacity": 8, "level": 9}
ALERT_COLUMNS = {"severity": 2, "group": 4, "code": 7, "description": 8}


@dataclass(frozen=True)
class PollPlan:
    """The objects one poll asks for: `scalars` (name -> OID, fetched once each) and `columns`
    (name -> column OID of a table, walked), all for one hrDeviceIndex."""

    device_index: int
    scalars: dict[str, OID]
    columns: dict[str, OID]
    vendors: tuple[str, ...] = ()
    with_tables: bool = True
    #: column prefixes asked once (GETNEXT of the prefix): the index of the table's first row,
    #: or None when the table is empty; answers "is there anything?" for one binding
    probes: dict[str, OID] = field(default_factory=dict)
    #: rows expected per column (known from an earlier poll), so one request gets them all
    repetitions: int | None = None


def poll_plan(device_index: int = 1, vendors=tuple(VENDORS), *, counters_only: bool = False,
              supplies: int | None = None) -> PollPlan:
    """What a poll asks for.

    A full poll (the default) walks the supplies' type, description, capacity and level columns
    and probes the alert table (`alert_probe`). With `supplies` (the number of supplies an earlier full poll found), a
    light poll: the supplies' levels only (what changes), and one probe of the alert table, which
    `alerts_plan` then reads only when it has rows. `counters_only`: the counters alone, for a
    copy session's readings."""
    i = device_index
    scalars: dict[str, OID] = {"prtMarkerLifeCount": PRT_MARKER_LIFE_COUNT + (i, 1)}
    if not counters_only:
        scalars.update(hrDeviceStatus=HR_DEVICE_STATUS + (i,),
                       hrPrinterStatus=HR_PRINTER_STATUS + (i,),
                       hrPrinterDetectedErrorState=HR_PRINTER_ERROR_STATE + (i,))
    for name in vendors:
        for counter, o in VENDORS[name].counters.items():
            scalars[f"{name}:{counter}"] = o
    columns: dict[str, OID] = {}
    if counters_only:
        return PollPlan(i, scalars, columns, tuple(vendors), False)
    if supplies is not None:
        columns["supply.level"] = PRT_SUPPLIES + (SUPPLY_COLUMNS["level"], i)
        return PollPlan(i, scalars, columns, tuple(vendors), True,
                        probes=alert_probe(i),
                        repetitions=supplies + 1)
    for name, col in SUPPLY_COLUMNS.items():
        columns[f"supply.{name}"] = PRT_SUPPLIES + (col, i)
    return PollPlan(i, scalars, columns, tuple(vendors), True, probes=alert_probe(i))


def alert_probe(device_index: int) -> dict[str, OID]:
    """Most printers have no alert most of the time: one binding says whether the table has
    rows, and only then is it walked (`alerts_plan`), instead of four columns of GETBULK
    repetitions running past an empty table into the rest of the MIB."""
    return {"alert.probe": PRT_ALERTS + (ALERT_COLUMNS["code"], device_index)}


def alerts_plan(device_index: int = 1) -> PollPlan:
    """The alert table alone (after a light poll's probe found rows)."""
    columns = {f"alert.{name}": PRT_ALERTS + (col, device_index) for name, col in ALERT_COLUMNS.items()}
    return PollPlan(device_index, {}, columns, (), False)


#: The supply columns that describe rather than measure: read by full polls only.
SUPPLY_DESCRIPTION = ("supply.type", "supply.description", "supply.max_capacity")


def vendors_found(plan: PollPlan, scalars: dict) -> tuple[str, ...]:
    """The vendors whose counters the agent answered (a plan for later polls asks only these)."""
    return tuple(v for v in plan.vendors
                 if any(scalars.get(f"{v}:{c}") is not None for c in VENDORS[v].counters))


# --- what the answers mean -----------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """One poll's answers, interpreted."""

    status: DeviceStatus
    counters: Counters
    supplies: tuple[Supply, ...] = ()
    alerts: tuple[Alert, ...] = ()
    vendors: tuple[str, ...] = field(default=())


def error_bits(octets: bytes) -> tuple[str, ...]:
    """The names of the bits set in an hrPrinterDetectedErrorState value (most significant bit
    of the first octet is bit 0, lowPaper); bits past the known ones are "bit N"."""
    out = []
    for i in range(len(octets) * 8):
        if octets[i // 8] & (0x80 >> (i % 8)):
            out.append(ERROR_BITS[i] if i < len(ERROR_BITS) else f"bit {i}")
    return tuple(out)


def supply(index: int, description: bytes | str | None, kind: int | None, level: int | None,
           max_capacity: int | None) -> Supply:
    """One supply with its percentage, RFC 3805's special values respected."""
    text = _text(description)
    level = -2 if level is None else int(level)
    max_capacity = -2 if max_capacity is None else int(max_capacity)
    percent = None
    if level >= 0 and max_capacity > 0:
        percent = max(0, min(100, round(100 * level / max_capacity)))
        remaining = "percent"
    elif level == -3:
        remaining = "some"
    elif level == -2:
        remaining = "unknown"
    elif level == -1:
        remaining = "other"
    elif level >= 0:
        remaining = "capacity unknown"
    else:
        remaining = "unknown"
    return Supply(index, text, SUPPLY_TYPES.get(kind, "unknown") if kind is not None else "unknown",
                  level, max_capacity, percent, remaining)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\x00").strip()
    return str(value)


def _state_of(hr_status: int | None, bits: tuple[str, ...] | None) -> DeviceState:
    states = []
    if hr_status is not None:
        states.append({2: DeviceState.UP, 3: DeviceState.WARNING, 4: DeviceState.WARNING,
                       5: DeviceState.ERROR}.get(hr_status, DeviceState.UNKNOWN))
    if bits is not None:
        if any(b not in MILD_BITS for b in bits):
            states.append(DeviceState.ERROR)
        elif bits:
            states.append(DeviceState.WARNING)
        else:
            states.append(DeviceState.UP)
    if not states:
        return DeviceState.UNKNOWN
    order = [DeviceState.UNKNOWN, DeviceState.UP, DeviceState.WARNING, DeviceState.ERROR]
    known = [s for s in states if s is not DeviceState.UNKNOWN]
    return max(known, key=order.index) if known else DeviceState.UNKNOWN


def read_poll(plan: PollPlan, scalars: dict, tables: dict, *, at=None) -> Reading:
    """Interpret a poll: `scalars` name -> value (None when the agent has no such object),
    `tables` column name -> {row index tuple: value}."""
    not_reported = []
    hr_status = scalars.get("hrDeviceStatus")
    printer_status = scalars.get("hrPrinterStatus")
    raw_bits = scalars.get("hrPrinterDetectedErrorState")
    if plan.with_tables:
        for name in ("hrDeviceStatus", "hrPrinterStatus", "hrPrinterDetectedErrorState"):
            if scalars.get(name) is None:
                not_reported.append(name)
    bits = error_bits(raw_bits) if isinstance(raw_bits, bytes) else None
    state = _state_of(hr_status if isinstance(hr_status, int) else None, bits)
    facts = {
        "hrDeviceStatus": HR_DEVICE_STATUS_NAMES.get(hr_status, hr_status) if hr_status is not None else None,
        "hrPrinterStatus": HR_PRINTER_STATUS_NAMES.get(printer_status, printer_status)
        if printer_status is not None else None,
        "hrPrinterDetectedErrorState": raw_bits.hex() if isinstance(raw_bits, bytes) else None,
    }
    if state is DeviceState.UNKNOWN and not_reported:
        detail = "answers SNMP; " + ", ".join(not_reported) + " not reported"
    else:
        detail = ", ".join(f"{k} {v}" for k, v in facts.items() if v is not None and k != "hrPrinterDetectedErrorState")
        if bits:
            detail += ("; " if detail else "") + ", ".join(bits)
    status = DeviceStatus(state, detail, bits or (), tuple(not_reported), facts, at)

    life = scalars.get("prtMarkerLifeCount")
    found = vendors_found(plan, scalars)
    detail_counters = {}
    for v in found:
        for counter in VENDORS[v].counters:
            value = scalars.get(f"{v}:{counter}")
            if value is not None:
                detail_counters[counter] = int(value)
    counters = Counters(int(life) if life is not None else None, detail_counters,
                        () if life is not None else ("prtMarkerLifeCount",))

    supplies = []
    rows = tables.get("supply.description", {}) or {}
    for index in sorted(set(rows) | set(tables.get("supply.level", {}) or {})):
        supplies.append(supply(index[-1] if index else 0, rows.get(index),
                               (tables.get("supply.type") or {}).get(index),
                               (tables.get("supply.level") or {}).get(index),
                               (tables.get("supply.max_capacity") or {}).get(index)))
    alerts = []
    codes = tables.get("alert.code", {}) or {}
    for index in sorted(set(codes) | set(tables.get("alert.severity", {}) or {})):
        sev = (tables.get("alert.severity") or {}).get(index)
        group = (tables.get("alert.group") or {}).get(index)
        code = codes.get(index)
        alerts.append(Alert(
            index[-1] if index else 0,
            ALERT_SEVERITIES.get(sev, f"severity {sev}"),
            ALERT_GROUPS.get(group, f"group {group}"),
            ALERT_CODES.get(code, f"code {code}"),
            _text((tables.get("alert.description") or {}).get(index)),
        ))
    return Reading(status, counters, tuple(supplies), tuple(alerts), found)
