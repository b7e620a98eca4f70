"""The DICOMweb server (QIDO-RS and WADO-RS, PS3.18) at ``/dicomweb/``: the viewer's only door to
pixels. Authentication and project scoping are the API's; see ``views`` for the URL list and
``multipart`` for the transfer-syntax negotiation rules.
"""
