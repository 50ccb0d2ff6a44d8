"""The API's bodies and answers as typed models (pydantic): the OpenAPI document (openapi.py) is
generated from them and from the route table (api.api_table). The handlers keep their own
checks and messages (which the tests pin); these models say what they accept and answer."""
from typing import Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from picocharge.firmware import fields

Status = Literal[tuple(fields.STATUSES)]
# the station id rule (fields.station_id_error) as a JSON Schema pattern, for the API document
STATION_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,%d}$" % (fields.STATION_ID_MAX - 1)
Ts = Field(json_schema_extra={"format": "date-time", "example": "2026-01-01T10:00:10Z"})


class Closed(BaseModel):
    """A request body: no field beyond those named, and no NaN or infinity in a number (JSON has
    neither, but Python's parser takes `NaN` and `Infinity`; without this a NaN limit met the
    bound check and was refused as "less than or equal to ..." instead of as not a number)."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Error(BaseModel):
    error: str = Field(description="What is wrong, and what to do about it.")


class CommandError(BaseModel):
    error: str
    code: Optional[str] = Field(None, description="The station's OCPP CALLERROR code (502 only).")
    details: Optional[dict] = Field(None, description="The CALLERROR's details (502 only).")
    id_tag_status: Optional[str] = Field(None, description="remote-start refused (409) before the station was "
                                                           "called: the tag's status in the id-tag list "
                                                           "(Invalid when it is not in it).")


def _reading_doc(r):
    """A reading key's description, from its row of the reading table (fields.READINGS)."""
    f = fields
    how = "OCPP %s" % r[f.MEASURAND] if r[f.MEASURAND] else None
    if how and r[f.LOCATION]:
        how += " at location %s" % r[f.LOCATION]
    elif how:
        how += " at a location no other reading takes"
    if r[f.CLIMATE]:
        how = (how + "; " if how else "") + "DataTransfer PicoCharge/Climate member %s" % r[f.CLIMATE]
    return "%s, %s (%s; ThingSpeak field%d)." % (r[f.LABEL], r[f.UNIT], how, r[f.FIELD])


# one optional number per reading key of the table, then the status
ReadingValues = create_model(
    "ReadingValues",
    **{r[fields.KEY]: (Optional[float], Field(None, description=_reading_doc(r))) for r in fields.READINGS},
    status=(Optional[Status], Field(None, description="The station's OCPP status at the reading.")))


class Reading(ReadingValues):
    """One stored reading; only the keys the station sent are present."""
    seq: int = Field(description="Row id: increases with every stored reading of the gateway.")
    ts: str = Field(description="When the station took the reading (UTC).",
                    json_schema_extra={"format": "date-time", "example": "2026-01-01T10:00:10Z"})


class LastReading(ReadingValues):
    seq: Optional[int] = None
    ts: Optional[str] = Field(None, json_schema_extra={"format": "date-time"})


class Station(BaseModel):
    id: str
    state: Literal["accepted", "pending", "rejected"] = Field(
        description="The operator's decision (BootNotification answer: Accepted, Pending, Rejected).")
    connected: bool = Field(description="An OCPP WebSocket is open now.")
    status: Optional[Status] = Field(None, description="Last StatusNotification (connector 1 wins over 0).")
    error_code: Optional[str] = None
    vendor: Optional[str] = None
    model: Optional[str] = None
    firmware: Optional[str] = Field(None, description="The firmwareVersion of its last BootNotification.")
    firmware_status: Optional["OtaStatus"] = Field(None, description="Its last FirmwareStatusNotification.")
    diagnostics_status: Optional["OtaStatus"] = Field(None, description="Its last DiagnosticsStatusNotification.")
    last_seen: Optional[str] = Field(None, json_schema_extra={"format": "date-time"})
    thingspeak_channel: Optional[int] = None
    security_profile: Optional[int] = Field(None, description="The OCPP security profile of its last sign-in since "
                                            "the gateway started: 1 Basic over ws://, 2 Basic over wss://, 3 client "
                                            "certificate, 0 none checked (--auth none); null before it connects.")
    local_list: Optional["LocalList"] = Field(None, description="Its local list: synced or not, version, state.")
    last_reading: LastReading = Field(description="The newest value of every reading key (merged over recent "
                                                  "readings), with the seq and ts of the newest; {} before the first.")


class Counts(BaseModel):
    total: int
    connected: int
    offline: int
    faulted: int = Field(description="Faulted status, or an error code other than NoError.")
    hot: int = Field(description="Enclosure temperature at or above the hot mark (50 \u00b0C), or HighTemperature.")
    pending: int = Field(description="Waiting for an operator's accept or reject.")
    status: Dict[str, int] = Field(description="Stations per OCPP status; `none`: no status yet.")


class FleetPage(BaseModel):
    total: int = Field(description="Stations that match the search and filters.")
    page: int
    limit: int
    pages: int
    counts: Counts = Field(description="The whole fleet's counts (not only the matches).")
    items: List[Station]


class LiveEvent(BaseModel):
    """The data of one Server-Sent Event of GET /api/events (JSON): `hello` carries the counts;
    `update` the stations that changed, the counts when they changed, the stations removed, and
    how many events this stream lost to a slow reader (reload what is shown when it grows)."""
    counts: Optional[Counts] = None
    stations: Optional[List[Station]] = None
    removed: Optional[List[str]] = None
    dropped: Optional[int] = None


class ReadingField(BaseModel):
    key: str = Field(description="The reading key (API, CSV, MQTT).")
    label: str
    unit: str = Field(description="The unit as stored (firmware/fields.py).")
    symbol: str = Field(description="The unit as the dashboard shows it.")



class NewStationAnswer(Station):
    password: Optional[str] = Field(None, description="Only when it was generated: shown this once.")


class NewStation(Closed):
    id: str = Field(pattern=STATION_ID_PATTERN, description=fields.STATION_ID_RULE)
    password: Optional[str] = Field(None, min_length=8, max_length=40,
                                    description="OCPP Basic-auth password; generated and returned once when left out.")
    thingspeak_channel: Optional[int] = Field(None, ge=1, description="Give with thingspeak_key.")
    thingspeak_key: Optional[str] = Field(None, min_length=1, max_length=64,
                                          description="The channel's write key (never returned or logged).")
    thingspeak_read_key: Optional[str] = Field(None, min_length=1, max_length=64,
                                               description="The channel's Read API key, for a private channel.")


class NewPassword(Closed):
    password: Optional[str] = Field(None, min_length=8, max_length=40,
                                    description="The new OCPP password; left out: one is generated (returned once).")


class ThingSpeakChannel(Closed):
    thingspeak_channel: Optional[int] = Field(ge=1, description="The channel id; null with a null key to stop.")
    thingspeak_key: Optional[str] = Field(min_length=1, max_length=64,
                                          description="The channel's write API key (printable, no spaces).")
    thingspeak_read_key: Optional[str] = Field(None, min_length=1, max_length=64,
                                               description="The channel's Read API key (private channels).")


IdTagStatus = Literal["Accepted", "Blocked", "Expired", "Invalid"]


class IdTag(Closed):
    id_tag: str = Field(min_length=1, max_length=20, description="The OCPP idToken (an RFID card's UID in hex).")
    status: IdTagStatus = "Accepted"
    parent_id_tag: Optional[str] = Field(None, min_length=1, max_length=20,
                                         description="Its group: tags of one parent stop each other's transactions.")
    expiry_date: Optional[str] = Field(None, description="After it the tag is answered Expired.",
                                       json_schema_extra={"format": "date-time"})


class IdTagView(IdTag):
    answered: Optional[Literal["Expired"]] = Field(None, description="Expired when its expiry date has passed: "
                                                                     "what a station is answered now.")


class IdTagPage(BaseModel):
    total: int
    page: int
    limit: int
    pages: int
    version: int = Field(description="The list's version: it grows with every change (local lists follow it).")
    items: List[IdTagView]


class IdTagPatch(Closed):
    status: Optional[IdTagStatus] = None
    parent_id_tag: Optional[str] = Field(None, max_length=20, description="\"\" or null: no parent.")
    expiry_date: Optional[str] = Field(None, description="\"\" or null: no expiry.")


class IdTagsImport(Closed):
    csv: str = Field(description="The CSV text (or send text/csv as the body): header id_tag,status[,parent_id_tag]"
                                 "[,expiry_date], one tag a line. One wrong line and nothing is imported.")


class IdTagsImported(BaseModel):
    imported: int
    version: int


class IdTagRemoved(BaseModel):
    id_tag: str
    removed: bool


class LocalList(BaseModel):
    sync: bool = Field(description="Whether the gateway keeps this station's local list in step with the id tags.")
    sync_set: Optional[bool] = Field(None, description="The station's own switch; null: the gateway's "
                                                       "--local-list-sync decides.")
    list_version: Optional[int] = Field(None, description="The listVersion the station last accepted from the "
                                                          "gateway.")
    in_sync: bool
    max_length: Optional[int] = Field(None, description="Its SendLocalListMaxLength (or the assumed default).")
    state: Optional[str] = Field(None, description="The last sync: Accepted, VersionMismatch, Failed, NotSupported "
                                                   "(no more tries until the switch is set again), NoAnswer, "
                                                   "Disconnected, Error.")
    detail: Optional[str] = None
    updated: Optional[str] = None
    running: bool = False


class LocalListSwitch(Closed):
    sync: Optional[bool] = Field(description="true, false, or null for the gateway's --local-list-sync.")


class NewReservation(Closed):
    connector_id: int = Field(ge=0, le=1000, description="0: any connector (if the station supports it).")
    id_tag: str = Field(min_length=1, max_length=20)
    expiry_date: str = Field(json_schema_extra={"format": "date-time", "example": "2027-01-01T10:00:00Z"})


class Reservation(BaseModel):
    id: int = Field(description="The reservationId, given by the gateway.")
    connector_id: int
    id_tag: str
    parent_id_tag: Optional[str] = None
    expiry_date: str
    status: str = Field(description="The station's ReserveNow answer (Accepted, Faulted, Occupied, Rejected, "
                                    "Unavailable), Sending, or NoAnswer.")
    state: Literal["active", "expired", "used", "cancelled", "refused", "sending", "no answer"]
    created: str
    cancelled: Optional[str] = None
    cancel_status: Optional[str] = Field(None, description="The station's CancelReservation answer.")
    transaction_id: Optional[int] = Field(None, description="The transaction started against it.")


class Transaction(BaseModel):
    id: int = Field(description="The transaction id given to the station.")
    station: str
    connector: int
    id_tag: str
    meter_start: Optional[int] = Field(None, description="Wh")
    start_ts: Optional[str] = Field(None, json_schema_extra={"format": "date-time"})
    meter_stop: Optional[int] = Field(None, description="Wh; null while it runs.")
    stop_ts: Optional[str] = Field(None, json_schema_extra={"format": "date-time"})
    reason: Optional[str] = Field(None, description="StopTransaction reason, or IdTag<status> when the tag was "
                                                    "not Accepted.")
    reservation_id: Optional[int] = Field(None, description="The reservation it was started against.")


class StatusEvent(BaseModel):
    connector: Optional[int] = None
    status: Optional[str] = None
    error_code: Optional[str] = None
    info: Optional[str] = Field(None, description="StatusNotification info, or an event such as FirmwareDownloaded.")
    ts: str = Field(json_schema_extra={"format": "date-time"})


class Removed(BaseModel):
    id: str
    removed: bool
    was_connected: bool


class Health(BaseModel):
    status: Literal["ok", "error"] = Field(description="error (with 503) when the store cannot write.")
    stations_connected: int
    stations_known: int
    uplinks: Dict[str, Literal["connected", "disconnected", "failing"]] = Field(
        description="Per configured uplink: mqtt connected or disconnected (the broker); thingspeak connected "
                    "while no station's last write failed, disconnected when one got no answer, failing when "
                    "ThingSpeak answered but did not store.")
    thingspeak_failing: Optional[Dict[str, str]] = Field(
        None, description="Only while some fail: station id -> why its last ThingSpeak write was not stored.")
    store_error: Optional[str] = Field(None, description="Why the store cannot write (only with status error).")
    live_streams: Optional[Dict[str, int]] = Field(
        None, description="Once the dashboard's event streams (GET /api/events) were used: open now; dropped "
                          "(events a slow reader lost, since start); refused (over the most streams, since start).")


class SignIn(Closed):
    token: str = Field(min_length=1, max_length=200, description="An API token of this gateway.")


class Session(BaseModel):
    role: Literal["read", "operate", "admin"]
    auth: Literal["session", "token", "none"]
    csrf: str = Field(description="Send it back in X-CSRF-Token with every write made with the session cookie.")


class SignedOut(BaseModel):
    signed_out: bool


# --- command bodies (the answers are the station's, as OCPP 1.6 spells them) ------------
class RemoteStart(Closed):
    id_tag: str = Field(min_length=1, max_length=20)
    connector_id: Optional[int] = Field(None, ge=1)


class RemoteStop(Closed):
    transaction_id: int


class Reset(Closed):
    type: Literal["Soft", "Hard"] = "Soft"


class ChangeAvailability(Closed):
    connector_id: int = Field(0, ge=0)
    type: Literal["Inoperative", "Operative"]


class GetConfiguration(Closed):
    key: Optional[List[str]] = None


class ChangeConfiguration(Closed):
    key: str = Field(min_length=1, max_length=50)
    value: Union[str, int, float] = Field(description="Sent as OCPP's string (a number as its text); 500 "
                                                       "characters at most.")


class TriggerMessage(Closed):
    requested_message: Literal["BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
                               "Heartbeat", "MeterValues", "StatusNotification"]
    connector_id: Optional[int] = Field(None, ge=1)


class UnlockConnector(Closed):
    connector_id: int = Field(1, ge=1)


def _tag_or_none(v, name):
    from .idtags import check_tag       # (idtags imports csms; models is imported by the API alone)
    return None if v is None else check_tag(v, name)


class IdTagInfo(Closed):
    status: Literal["Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"]
    expiry_date: Optional[str] = Field(None, json_schema_extra={"format": "date-time"})
    parent_id_tag: Optional[str] = Field(None, min_length=1, max_length=20)

    # the same checks as the id-tag list's (printable, an ISO 8601 date-time): what the API
    # sends a station in SendLocalList is held to them at the door
    @field_validator("expiry_date")
    @classmethod
    def _expiry(cls, v):
        from .idtags import check_expiry
        return check_expiry(v)

    @field_validator("parent_id_tag")
    @classmethod
    def _parent(cls, v):
        return _tag_or_none(v, "parent_id_tag")


class AuthorizationData(Closed):
    id_tag: str = Field(min_length=1, max_length=20)
    id_tag_info: Optional[IdTagInfo] = Field(None, description="Left out in a Differential: the tag is removed.")

    @field_validator("id_tag")
    @classmethod
    def _tag(cls, v):
        return _tag_or_none(v, "id_tag")


class SendLocalList(Closed):
    list_version: int = Field(ge=0, le=2 ** 31 - 1)
    update_type: Literal["Differential", "Full"]
    local_authorization_list: Optional[List[AuthorizationData]] = Field(None, max_length=1000)


class NoFields(Closed):
    pass


class CancelReservation(Closed):
    reservation_id: int = Field(ge=1, le=2 ** 31 - 1)


class DataTransfer(Closed):
    vendor_id: str = Field(min_length=1, max_length=255)
    message_id: Optional[str] = Field(None, max_length=50)
    data: Optional[str] = Field(None, max_length=10000, description="Text, 10,000 characters at most.")


COMMAND_BODIES = {
    "remote-start": (RemoteStart, {"id_tag": "TAG1"}),
    "remote-stop": (RemoteStop, {"transaction_id": 1}),
    "reset": (Reset, {"type": "Soft"}),
    "change-availability": (ChangeAvailability, {"connector_id": 1, "type": "Operative"}),
    "get-configuration": (GetConfiguration, {"key": ["MeterValueSampleInterval"]}),
    "change-configuration": (ChangeConfiguration, {"key": "MeterValueSampleInterval", "value": "60"}),
    "trigger-message": (TriggerMessage, {"requested_message": "StatusNotification", "connector_id": 1}),
    "unlock-connector": (UnlockConnector, {"connector_id": 1}),
    "send-local-list": (SendLocalList, {"list_version": 1, "update_type": "Differential", "local_authorization_list": [
        {"id_tag": "TAG1", "id_tag_info": {"status": "Accepted"}}]}),
    "get-local-list-version": (NoFields, {}),
    "clear-cache": (NoFields, {}),
    "reserve-now": (NewReservation, {"connector_id": 1, "id_tag": "TAG1", "expiry_date": "2027-01-01T10:00:00Z"}),
    "cancel-reservation": (CancelReservation, {"reservation_id": 1}),
    "data-transfer": (DataTransfer, {"vendor_id": "PicoCharge", "message_id": "Ping", "data": "hello"}),
}


class StationConfigured(BaseModel):
    status: Optional[str] = Field(None, description="The station's answer to ChangeConfiguration: Accepted, "
                                                    "Rejected, RebootRequired or NotSupported.")
    error: Optional[str] = Field(None, description="Why there is no answer: not connected, no answer in time...")


class Configured(BaseModel):
    key: str
    value: str
    stations: Dict[str, StationConfigured] = Field(description="Every registered station's outcome, by id.")
    counts: Dict[str, int] = Field(description="How many stations answered each status; 'not connected', "
                                               "'failed' for the others.")


# --- over-the-air updates and diagnostics (docs/ota.md, rollouts.py, otaweb.py) ---
class OtaStatus(BaseModel):
    status: str = Field(description="Downloading, Downloaded, DownloadFailed, Installing, Installed, "
                                    "InstallationFailed, Idle (firmware); Uploading, Uploaded, UploadFailed, Idle "
                                    "(diagnostics).")
    ts: str = Field(json_schema_extra={"format": "date-time"})


Station.model_rebuild()
NewStationAnswer.model_rebuild()


class OtaEvent(OtaStatus):
    kind: Literal["firmware", "diagnostics"]


class Release(BaseModel):
    version: str
    board: Optional[str] = Field(None, description="null: the application alone; a board name: with its module.")
    mpy: Optional[int] = Field(None, description="The .mpy version the files were compiled for (null: sources).")
    key_id: str = Field(description="The first 8 hex digits of SHA-256 of the release key it is signed with.")
    created: str
    files: int
    size: int = Field(description="Bytes of the files together.")
    added_at: str = Field(json_schema_extra={"format": "date-time"})


class Update(Closed):
    version: str = Field(description="A release stored on the gateway (GET /api/releases).")
    retrieve_date: Optional[str] = Field(None, description="When the station fetches it (ISO 8601; default now).",
                                         json_schema_extra={"format": "date-time"})
    retries: Optional[int] = Field(None, ge=0, le=100)
    retry_interval: Optional[int] = Field(None, ge=0, le=86400)


class UpdateSent(BaseModel):
    location: str = Field(description="The manifest URL sent to the station (its /fw/<version>/manifest.json).")
    retrieve_date: str
    answer: dict = Field(description="The station's UpdateFirmware answer (an empty object).")


class DiagnosticsRequest(Closed):
    start_time: Optional[str] = Field(None, json_schema_extra={"format": "date-time"})
    stop_time: Optional[str] = Field(None, json_schema_extra={"format": "date-time"})
    retries: Optional[int] = Field(None, ge=0, le=100)
    retry_interval: Optional[int] = Field(None, ge=0, le=86400)


class DiagnosticsSent(BaseModel):
    location: str = Field(description="The folder URL sent to the station (its /diag/<id>/).")
    answer: dict = Field(description="The station's GetDiagnostics answer: {fileName} of the file it uploads.")


class DiagnosticsFile(BaseModel):
    name: str
    size: int
    received: str = Field(json_schema_extra={"format": "date-time"})


class NewRollout(Closed):
    version: str
    stations: Union[List[str], Literal["all"]] = Field(description='Station ids in wave order, or "all".')
    wave: int = Field(1, ge=1, description="Stations per wave; the next wave starts when each of this one is done.")
    max_failures: int = Field(1, ge=1, description="The rollout stops at this many failed stations.")
    timeout: int = Field(1800, ge=5, description="Seconds a station has to report Installed and boot the version.")


class RolloutStation(BaseModel):
    station: str
    state: Literal["waiting", "updating", "done", "failed", "skipped", "cancelled"]
    detail: Optional[str] = Field(None, description="Its last firmware status, or why it failed.")
    started: Optional[str] = None
    finished: Optional[str] = None


class Rollout(BaseModel):
    id: int
    version: str
    wave: int
    max_failures: int
    timeout: int
    state: Literal["running", "stopped", "done", "cancelled"]
    reason: Optional[str] = Field(None, description="Why it stopped (the failed stations), or ended.")
    created: str
    finished: Optional[str] = None
    counts: Dict[str, int] = Field(description="Stations per state.")
    stations: List[RolloutStation]


class ReleaseUpload(Closed):
    archive_base64: str = Field(description="The release folder as a tar or zip archive, in base64 (or send the "
                                            "archive itself as the body: application/x-tar, application/zip).")


class ReleaseRemoved(BaseModel):
    version: str
    removed: bool


class DiagnosticsFileStored(BaseModel):
    name: str
    size: int
