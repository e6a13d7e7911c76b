"""adp-identity: identity and Dataverse access as code for Defra's Azure Development Platform."""

__version__ = "0.1.0"
