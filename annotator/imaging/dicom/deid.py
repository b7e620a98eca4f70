"""De-identification on ingest: the PS3.15 Basic Application Level Confidentiality Profile.

Every attribute's action comes from Table E.1-1 of PS3.15 as the ``dicom-anonymizer`` package
ships it (its 2026c edition, :data:`TABLE_EDITION`): X removed, Z emptied, D replaced by a dummy,
U replaced by a UID; the compound actions take their most conservative conforming form
(X/Z -> Z, X/D, Z/D and X/Z/D -> D, X/Z/U* -> kept with the items cleaned). Attributes not in the
table are kept, sequences are cleaned item by item at every depth, private attributes are removed,
and so are curves (50xx) and overlay data and comments (60xx,3000 / 60xx,4000).

Two options of the profile can be switched on (:class:`Options`):

* Retain Longitudinal Temporal Information with Modified Dates (113107): the table's dates,
  times and date-times are moved by one per-patient offset (days and seconds, earlier), so
  intervals between a patient's acquisitions survive while neither the day nor the time of day
  is the true one. A date and its time (StudyDate and StudyTime, DateOfSecondaryCapture and
  TimeOfSecondaryCapture: the keyword with Date for Time) move together, the time's carry moving
  the date; a time alone wraps round the clock; a date alone moves by the offset taken from noon;
  date-times lose their UTC offset (the place it would tell). (0028,0303) says MODIFIED. Without
  the option the table's actions apply to dates and times too (emptied, removed or a dummy) and
  (0028,0303) says REMOVED.
* Clean Descriptors (113105): the descriptors of the option's column of Table E.1-1 (study and
  series descriptions, protocol name, comments, ...) are kept as attributes but cleaned by
  emptying them, since free text cannot be cleaned reliably.

Beyond the table, the project's pseudonyms replace PatientName and PatientID (consistent across
studies), and UIDs are remapped through the same table every time, so series, references between
objects (an RTSTRUCT or SEG pointing at its images) and re-imports stay coherent.

Pure functions: the caller supplies a :class:`Pseudonymizer` that remembers the mapping (the
Django side keeps it in the database, visible to managers only).
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as e1_1
from pydicom import DataElement, Dataset
from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

TABLE_EDITION = "2026c"
_KEYWORDS = frozenset(keyword_dict)

# The Basic Profile column of Table E.1-1: tag -> action.
REMOVE, EMPTY, DUMMY, NEW_UID, KEEP_CLEANED, CLEAN = "X", "Z", "D", "U", "X/Z/U*", "C"
_CATEGORIES = {
    "D_TAGS": DUMMY,
    "Z_TAGS": EMPTY,
    "X_TAGS": REMOVE,
    "U_TAGS": NEW_UID,
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": KEEP_CLEANED,
}
# The profile leaves the choice within a compound action to the IOD (type 3, 2 or 1); without
# the IOD at hand, the form that keeps any IOD valid is taken.
_CONFORMING = {"Z/D": DUMMY, "X/Z": EMPTY, "X/D": DUMMY, "X/Z/D": DUMMY}


def _profile_table() -> tuple[dict[int, str], list[tuple[int, int, int, int, str]]]:
    single: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, action in _CATEGORIES.items():
        for entry in getattr(e1_1, category):
            if len(entry) == 2:
                single[Tag(entry[0], entry[1])] = action
            else:  # (group, element, group mask, element mask): curves and overlays
                masked.append((*entry, action))
    return single, masked


BASIC_PROFILE, BASIC_PROFILE_GROUPS = _profile_table()


def _vr_of(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:  # an attribute newer than pydicom's dictionary
        return ""


# The "Rtn. Long. Modif. Dates Opt." column: the table's dates, times and date-times, except the
# patient's birth date and time (only the Retain Patient Characteristics option would keep them).
MODIFIED_DATES = frozenset(
    tag
    for tag in BASIC_PROFILE
    if _vr_of(tag) in ("DA", "DT", "TM")
    and tag not in (Tag("PatientBirthDate"), Tag("PatientBirthTime"))
)

# The "Clean Desc. Opt." column of Table E.1-1 (the package ships only the Basic Profile column).
_CLEAN_DESCRIPTOR_KEYWORDS = """
AcquisitionComments AcquisitionDeviceProcessingDescription AcquisitionFieldOfViewLabel
AcquisitionProtocolDescription AdditionalPatientHistory AdmittingDiagnosesCodeSequence
AdmittingDiagnosesDescription Allergies AnnotationGroupDescription AnnotationGroupLabel
BeamDescription BolusDescription ClinicalTrialSeriesDescription
ClinicalTrialTimePointDescription CommentsOnRadiationDose CommentsOnThePerformedProcedureStep
CompensatorDescription ConceptualVolumeCombinationDescription ConceptualVolumeDescription
ContainerDescription ContrastBolusAgent ContributionDescription DecompositionDescription
DerivationDescription DeviceSettingDescription DischargeDiagnosisDescription
DisplacementReferenceLabel DoseReferenceDescription EntityDescription EntityLabel
EntityLongLabel EntityName EquipmentFrameOfReferenceDescription FilterLookupTableDescription
FixationDeviceDescription FractionGroupDescription FractionationNotes FrameComments
IdentifyingComments ImageComments ImagingServiceRequestComments Impressions InterlockDescription
InterlockOriginDescription InterpretationDiagnosisDescription InterpretationText LabelText
LongDeviceDescription MakerNote MedicalAlerts MultienergyAcquisitionDescription Occupation
PatientComments PatientSetupPhotoDescription PatientState
PatientTreatmentPreparationMethodDescription
PatientTreatmentPreparationProcedureParameterDescription PerformedProcedureStepDescription
PositionAcquisitionTemplateDescription PositionAcquisitionTemplateName PrescriptionDescription
PrescriptionNotes PrescriptionNotesSequence PriorTreatmentDoseDescription ProtocolName
PyramidDescription PyramidLabel ROIDescription ROIGenerationDescription ROIName
ROIObservationDescription ROIObservationLabel RTPhysicianIntentNarrative RTPlanDescription
RTPlanLabel RTPlanName RTPrescriptionLabel RTToleranceSetLabel RTTreatmentApproachLabel
RadiationDoseIdentificationLabel RadiationDoseInVivoMeasurementLabel
RadiationGenerationModeDescription RadiationGenerationModeLabel ReasonForOmissionDescription
ReasonForRequestedProcedureCodeSequence ReasonForStudy ReasonForSuperseding
ReasonForTheAttributeModification ReasonForTheImagingServiceRequest
ReasonForTheRequestedProcedure ReasonForVisit ReasonForVisitCodeSequence
RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
RequestedProcedureDescription RequestedSeriesDescription
RespiratoryMotionCompensationTechniqueDescription ResultsComments
ScheduledProcedureStepDescription SelectorLOValue SelectorLTValue SelectorSHValue
SelectorSTValue SelectorUTValue SeriesDescription ServiceEpisodeDescription
SetupTechniqueDescription ShieldingDeviceDescription SpecimenDetailedDescription
SpecimenShortDescription StructureSetDescription StructureSetLabel StructureSetName
StudyComments StudyDescription TreatmentPositionGroupLabel TreatmentSite TreatmentSites
TreatmentTechniqueNotes TreatmentToleranceViolationDescription UserContentLabel
UserContentLongLabel VisitComments WaveformFilterDescription
"""
CLEAN_DESCRIPTORS = frozenset(Tag(keyword) for keyword in _CLEAN_DESCRIPTOR_KEYWORDS.split())

# CID 7050, Table E.1-1's codes.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
MODIFIED_DATES_CODE = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CLEAN_DESCRIPTORS_CODE = ("113105", "Clean Descriptors Option")

# Dummies (D) consistent with each VR; a UID's dummy is its remapped value.
_TEXT_DUMMY = "ANONYMIZED"
_DUMMIES: dict[str, Any] = {
    **dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"), _TEXT_DUMMY),
    "AS": "000Y",
    "UR": "http://anonymized.invalid",
    "DA": "00010101",
    "TM": "000000.00",
    "DT": "00010101000000.00",
    **dict.fromkeys(("DS", "IS"), "0"),
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"), 0),
}
_BINARY_DUMMY = bytes(8)  # a valid length for OB, OW, OF, OD, OL, OV and UN
SPECIFIC_CHARACTER_SET = Tag("SpecificCharacterSet")


@dataclass(frozen=True)
class Options:
    """The profile's options in use (PS3.15 E.3)."""

    modified_dates: bool = True
    clean_descriptors: bool = False


class Pseudonymizer(Protocol):
    def patient(self, original_id: str, original_name: str) -> tuple[str, dt.timedelta]:
        """(pseudonym, time shift) for a patient, the same every time."""
        ...

    def uid(self, original: str) -> str:
        """The replacement of an instance-level UID, the same every time."""
        ...


def _parse_time(value: str) -> dt.timedelta | None:
    """A TM (HH, HHMM, HHMMSS, HHMMSS.F-FFFFFF; the old HH:MM:SS too) as the time since midnight."""
    text = value.strip().replace(":", "")
    whole, _, fraction = text.partition(".")
    if len(whole) not in (2, 4, 6) or not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    hours, minutes, seconds = int(whole[:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    micro = int((fraction + "000000")[:6]) if fraction else 0
    return dt.timedelta(hours=hours, minutes=minutes, seconds=min(seconds, 59), microseconds=micro)


def _format_time(moment: dt.datetime) -> str:
    text = moment.strftime("%H%M%S")
    return f"{text}.{moment.microsecond:06d}" if moment.microsecond else text


def _parse_date(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(value.strip()[:8], "%Y%m%d")
    except ValueError:
        return None


def shift_date(value: str, shift: dt.timedelta) -> str:
    """A DA alone, moved by ``shift`` taken from noon; "" when it is no date (dropped, not kept)."""
    day = _parse_date(value)
    return "" if day is None else (day + dt.timedelta(hours=12) + shift).strftime("%Y%m%d")


def shift_time(value: str, shift: dt.timedelta) -> str:
    """A TM alone, moved by ``shift`` round the clock; "" when it is no time."""
    time = _parse_time(value)
    return (
        ""
        if time is None
        else _format_time(dt.datetime(2000, 1, 1) + (time + shift) % dt.timedelta(days=1))
    )


def shift_date_and_time(date: str, time: str, shift: dt.timedelta) -> tuple[str, str]:
    """A DA and its TM moved together: the time's carry moves the date."""
    day, since_midnight = _parse_date(date), _parse_time(time)
    if day is None or since_midnight is None:
        return shift_date(date, shift), shift_time(time, shift)
    moment = day + since_midnight + shift
    return moment.strftime("%Y%m%d"), _format_time(moment)


def shift_datetime(value: str, shift: dt.timedelta) -> str:
    """A DT moved by ``shift``, without its UTC offset (the place it would tell)."""
    text = value.strip()
    for sign in "+-":
        text = text.split(sign)[0]
    if len(text) <= 8:
        return shift_date(text, shift)
    date, time = shift_date_and_time(text[:8], text[8:], shift)
    return date + time if date and time else ""


def _partner(element: DataElement) -> int | None:
    """The TM of a DA or the DA of a TM by keyword (StudyDate / StudyTime), if it exists."""
    keyword = element.keyword
    if element.VR == "DA" and "Date" in keyword:
        other = keyword.replace("Date", "Time")
    elif element.VR == "TM" and "Time" in keyword:
        other = keyword.replace("Time", "Date")
    else:
        return None
    tag = Tag(other) if other in _KEYWORDS else None
    return int(tag) if tag is not None else None


def action_for(tag: BaseTag, options: Options) -> str | None:
    """The action for ``tag`` under the profile and ``options``; None: not in the table."""
    if options.clean_descriptors and tag in CLEAN_DESCRIPTORS:
        return CLEAN
    if options.modified_dates and tag in MODIFIED_DATES:
        return CLEAN
    action = BASIC_PROFILE.get(tag)
    if action is None:
        for group, element, group_mask, element_mask, masked_action in BASIC_PROFILE_GROUPS:
            if tag.group & group_mask == group and tag.element & element_mask == element:
                return masked_action
        return None
    return _CONFORMING.get(action, action)


class _Cleaner:
    def __init__(self, mapper: Pseudonymizer, options: Options, shift: dt.timedelta) -> None:
        self.mapper, self.options, self.shift = mapper, options, shift

    def dataset(self, ds: Dataset, *, dummies: bool = False) -> None:
        """Apply the profile to every element of ``ds``; ``dummies``: inside a D sequence."""
        moved = self.shift_pairs(ds) if self.options.modified_dates else set()
        for element in list(ds):
            if int(element.tag) in moved:
                continue
            if element.tag.is_private:
                del ds[element.tag]
                continue
            action = action_for(element.tag, self.options)
            if action is None and dummies and not _kept_in_dummies(element):
                action = DUMMY
            if action == REMOVE:
                del ds[element.tag]
            elif action == EMPTY:
                element.value = [] if element.VR == "SQ" else None
            elif action == DUMMY:
                self.dummy(element)
            elif action == NEW_UID:
                self.new_uid(element)
            elif action == CLEAN:
                self.clean(element)
            elif element.VR == "SQ":  # kept (K, X/Z/U*): its items are cleaned
                for item in element.value:
                    self.dataset(item, dummies=dummies)

    def dummy(self, element: DataElement) -> None:
        if element.VR == "SQ":
            for item in element.value:
                self.dataset(item, dummies=True)
        elif element.VR == "UI":
            self.new_uid(element)
        elif element.VR in _DUMMIES:
            element.value = _DUMMIES[element.VR]
        else:
            element.value = _BINARY_DUMMY

    def new_uid(self, element: DataElement) -> None:
        values = _values(element) if element.VR == "UI" else []
        element.value = [self.mapper.uid(v) for v in values] or None

    def shift_pairs(self, ds: Dataset) -> set[int]:
        """Move each modified date of ``ds`` with its time (one value each) and return their
        tags: the element loop leaves them as they are."""
        moved: set[int] = set()
        for element in list(ds):
            partner = _partner(element)
            if element.VR != "DA" or partner is None or partner not in ds:
                continue
            time = ds[partner]
            if MODIFIED_DATES.isdisjoint({element.tag, time.tag}):
                continue
            dates, times = _values(element), _values(time)
            if len(dates) == len(times) == 1:
                date_value, time_value = shift_date_and_time(dates[0], times[0], self.shift)
                element.value, time.value = date_value or None, time_value or None
                moved |= {int(element.tag), int(time.tag)}
        return moved

    def clean(self, element: DataElement) -> None:
        """C: modified dates shifted per patient, descriptors emptied."""
        if element.tag in CLEAN_DESCRIPTORS and self.options.clean_descriptors:
            element.value = [] if element.VR == "SQ" else None
        elif element.VR in _SHIFTS:
            shift = _SHIFTS[element.VR]
            element.value = [shift(v, self.shift) for v in _values(element)] or None


_SHIFTS = {"DA": shift_date, "TM": shift_time, "DT": shift_datetime}


def _values(element: DataElement) -> list[str]:
    value = element.value
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [str(value)]
    return [str(v) for v in value]


def _kept_in_dummies(element: DataElement) -> bool:
    """Kept in a D sequence's items: nested sequences (cleaned in turn), the character set and
    well-known UIDs (a SOP class, a transfer syntax, ...), which name a kind of thing."""
    if element.VR == "SQ" or element.tag == SPECIFIC_CHARACTER_SET:
        return True
    return element.VR == "UI" and all(UID(v).type for v in _values(element))


def _code(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
    return code


def method(options: Options) -> tuple[list[str], list[tuple[str, str]]]:
    """DeidentificationMethod's values (LO: at most 64 characters each) and the CID 7050 codes."""
    texts = [f"PS3.15 Basic Profile (Table E.1-1, {TABLE_EDITION})"]
    codes = [BASIC_PROFILE_CODE]
    if options.modified_dates:
        texts.append("Retain Longitudinal Temporal Info. with Modified Dates")
        codes.append(MODIFIED_DATES_CODE)
    if options.clean_descriptors:
        texts.append("Clean Descriptors (emptied)")
        codes.append(CLEAN_DESCRIPTORS_CODE)
    return texts, codes


def deidentify(ds: Dataset, mapper: Pseudonymizer, options: Options = Options()) -> Dataset:
    """De-identify ``ds`` in place (and its file meta) and return it."""
    pseudonym, shift = mapper.patient(str(ds.get("PatientID", "")), str(ds.get("PatientName", "")))
    _Cleaner(mapper, options, shift).dataset(ds)
    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    ds.PatientIdentityRemoved = "YES"
    texts, codes = method(options)
    ds.DeidentificationMethod = texts
    ds.DeidentificationMethodCodeSequence = [_code(value, meaning) for value, meaning in codes]
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if options.modified_dates else "REMOVED"
    if getattr(ds, "preamble", None):
        ds.preamble = bytes(128)  # free for any use: some write a TIFF header with the patient
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
