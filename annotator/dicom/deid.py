"""De-identification on ingest after the PS3.15 Basic Application Level Confidentiality Profile.

With the options "Retain Longitudinal Temporal Information with Modified Dates" (dates are
shifted by a per-patient offset, so intervals between a patient's studies survive) and
consistent pseudonyms: the same patient gets the same pseudonym and date shift in every study,
and the same original UID always maps to the same new UID, so series, references between objects
(an RTSTRUCT or SEG pointing at its images) and re-imports stay coherent.

Pure functions: the caller supplies a :class:`Pseudonymizer` that remembers the mapping (the
Django side keeps it in the database, visible to managers only).
"""

import datetime as dt
from typing import Protocol

from pydicom import Dataset

METHOD = "PS3.15 Basic Profile, modified dates"  # LO: 64 characters at most
# CID 7050: Basic Application Confidentiality Profile; Retain Longitudinal ... Modified Dates.
METHOD_CODES = [
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
]

# Identifying attributes replaced by a pseudonym (D: dummy value).
REPLACED = {"PatientName", "PatientID"}
# Identifying attributes emptied (Z) or removed (X) by the Basic Profile. The list covers the
# profile's person, institution, device and free-text attributes found in image and label objects.
REMOVED = {
    "AccessionNumber",
    "AdmittingDiagnosesDescription",
    "AdditionalPatientHistory",
    "BranchOfService",
    "ContentCreatorName",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "DerivationDescription",
    "DeviceSerialNumber",
    "ImageComments",
    "InstitutionAddress",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "IssuerOfPatientID",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "NameOfPhysiciansReadingStudy",
    "Occupation",
    "OperatorsName",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientReligiousPreference",
    "PatientTelephoneNumbers",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepID",
    "PerformingPhysicianName",
    "PhysiciansOfRecord",
    "ReferringPhysicianAddress",
    "ReferringPhysicianName",
    "ReferringPhysicianTelephoneNumbers",
    "RequestAttributesSequence",
    "RequestingPhysician",
    "RequestingService",
    "ResponsiblePerson",
    "ScheduledProcedureStepID",
    "StationName",
    "StudyID",
    "TextString",
    "EthnicGroup",
    "PatientSize",
    "PatientWeight",
    "RegionOfResidence",
    "PersonName",
    "ReviewerName",
    "VerifyingObserverName",
    "StructureSetName",
    "StructureSetLabel",
    "StructureSetDescription",
}
# UIDs that name a kind of thing, not a thing: never remapped.
KEPT_UIDS = {
    "SOPClassUID",
    "ReferencedSOPClassUID",
    "TransferSyntaxUID",
    "MediaStorageSOPClassUID",
    "ImplementationClassUID",
    "CodingSchemeUID",
    "ContextGroupExtensionCreatorUID",
    "MappingResourceUID",
    "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID",
}


class Pseudonymizer(Protocol):
    def patient(self, original_id: str, original_name: str) -> tuple[str, int]:
        """(pseudonym, date shift in days) for a patient, the same every time."""
        ...

    def uid(self, original: str) -> str:
        """The replacement of an instance-level UID, the same every time."""
        ...


def shift_date(value: str, days: int) -> str:
    try:
        return (dt.datetime.strptime(value[:8], "%Y%m%d") + dt.timedelta(days=days)).strftime(
            "%Y%m%d"
        ) + value[8:]
    except ValueError:
        return ""  # not a date we can shift: drop it rather than keep it


def _clean(ds: Dataset, mapper: Pseudonymizer, shift: int) -> None:
    for element in list(ds):
        keyword = element.keyword
        if element.tag.is_private or keyword in REMOVED:
            del ds[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                _clean(item, mapper, shift)
        elif element.VR == "UI" and keyword not in KEPT_UIDS and element.value:
            if isinstance(element.value, list) or element.VM > 1:
                element.value = [mapper.uid(str(v)) for v in element.value]
            else:
                element.value = mapper.uid(str(element.value))
        elif element.VR in ("DA", "DT") and element.value:
            if element.VM > 1:
                element.value = [shift_date(str(v), shift) for v in element.value]
            else:
                element.value = shift_date(str(element.value), shift)


def deidentify(ds: Dataset, mapper: Pseudonymizer) -> Dataset:
    """De-identify ``ds`` in place (and its file meta) and return it."""
    pseudonym, shift = mapper.patient(str(ds.get("PatientID", "")), str(ds.get("PatientName", "")))
    _clean(ds, mapper, shift)
    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    if "PatientBirthDate" in ds:
        ds.PatientBirthDate = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    codes = []
    for value, meaning in METHOD_CODES:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
        codes.append(code)
    ds.DeidentificationMethodCodeSequence = codes
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
