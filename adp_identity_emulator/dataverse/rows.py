"""The tables this slice serves (``systemuser``, ``role``, ``businessunit``) and how their rows look on the wire.

Column names, order and JSON value types follow rows recorded from a real environment
(``tests/fixtures/recorded-dataverse/``): a client that parses a real ``systemuser`` row parses ours. Each
column carries its EDM type, which ``$filter`` uses to refuse comparisons Dataverse refuses (a GUID column
against a quoted string, say).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .state import ApplicationUser, BusinessUnit, DataverseEnvironment, SecurityRole

G, S, B, I32, L, D, F, M, X, C = (
    "Edm.Guid",
    "Edm.String",
    "Edm.Boolean",
    "Edm.Int32",
    "Edm.Int64",
    "Edm.DateTimeOffset",
    "Edm.Double",
    "Edm.Decimal",
    "Edm.Binary",
    "Microsoft.Dynamics.CRM.BooleanManagedProperty",
)

# Every column of a recorded systemuser row, in the recorded order.
_SYSTEMUSER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ownerid", G), ("address1_postofficebox", S), ("yomimiddlename", S), ("mobilealertemail", S),
    ("address1_composite", S), ("userpuid", S), ("accessmode", I32), ("azurestate", I32), ("internalemailaddress", S),
    ("address1_addressid", G), ("middlename", S), ("entityimage", X), ("_mobileofflineprofileid_value", G),
    ("photourl", S), ("organizationid", G), ("homephone", S), ("address1_upszone", S), ("entityimage_url", S),
    ("_createdby_value", G), ("azureactivedirectoryobjectid", G), ("yammeremailaddress", S),
    ("address1_shippingmethodcode", I32), ("caltype", I32), ("governmentid", S), ("address2_upszone", S),
    ("yomifullname", S), ("_modifiedby_value", G), ("applicationiduri", S), ("nickname", S),
    ("incomingemaildeliverymethod", I32), ("displayinserviceviews", B), ("firstname", S), ("personalemailaddress", S),
    ("setupuser", B), ("address1_addresstypecode", I32), ("salutation", S), ("address2_city", S),
    ("address2_longitude", F), ("address1_line2", S), ("address2_addresstypecode", I32), ("sharepointemailaddress", S),
    ("stageid", G), ("azuredeletedon", D), ("preferredphonecode", I32), ("address2_utcoffset", I32), ("isdisabled", B),
    ("_modifiedonbehalfby_value", G), ("mobilephone", S), ("entityimageid", G), ("address1_name", S),
    ("address2_shippingmethodcode", I32), ("fullname", S), ("processid", G), ("address2_stateorprovince", S),
    ("yomifirstname", S), ("importsequencenumber", I32), ("_positionid_value", G), ("_calendarid_value", G),
    ("invitestatuscode", I32), ("address2_line3", S), ("modifiedon", D), ("address1_stateorprovince", S),
    ("address1_telephone3", S), ("defaultodbfoldername", S), ("address1_telephone2", S), ("address1_telephone1", S),
    ("utcconversiontimezonecode", I32), ("identityid", I32), ("isemailaddressapprovedbyo365admin", B), ("lastname", S),
    ("address2_latitude", F), ("address1_county", S), ("issyncwithdirectory", B), ("address1_city", S),
    ("address2_postofficebox", S), ("address1_fax", S), ("traversedpath", S), ("_createdonbehalfby_value", G),
    ("userlicensetype", I32), ("address2_line1", S), ("islicensed", B), ("_territoryid_value", G), ("passportlo", I32),
    ("address1_utcoffset", I32), ("_parentsystemuserid_value", G), ("address1_line3", S), ("_queueid_value", G),
    ("_businessunitid_value", G), ("yammeruserid", S), ("address1_postalcode", S), ("address1_country", S),
    ("deletedstate", I32), ("skills", S), ("applicationid", G), ("address2_county", S), ("address2_postalcode", S),
    ("exchangerate", M), ("passporthi", I32), ("address1_line1", S), ("yomilastname", S), ("address2_country", S),
    ("address2_name", S), ("defaultfilterspopulated", B), ("_defaultmailbox_value", G), ("systemuserid", G),
    ("timezoneruleversionnumber", I32), ("windowsliveid", S), ("overriddencreatedon", D), ("address2_fax", S),
    ("employeeid", S), ("_transactioncurrencyid_value", G), ("address2_addressid", G),
    ("emailrouteraccessapproval", I32), ("preferredaddresscode", I32), ("address2_composite", S),
    ("preferredemailcode", I32), ("domainname", S), ("title", S), ("address2_telephone3", S),
    ("address2_telephone2", S), ("address2_telephone1", S), ("address1_latitude", F), ("jobtitle", S),
    ("isintegrationuser", B), ("address1_longitude", F), ("createdon", D), ("outgoingemaildeliverymethod", I32),
    ("address2_line2", S), ("entityimage_timestamp", L), ("disabledreason", S), ("versionnumber", L),
)  # fmt: skip

# Every column of a recorded role row, in the recorded order.
_ROLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("overwritetime", D), ("organizationid", G), ("isinherited", I32), ("solutionid", G), ("roleidunique", G),
    ("ismanaged", B), ("roleid", G), ("componentstate", I32), ("modifiedon", D), ("_modifiedby_value", G),
    ("_parentrootroleid_value", G), ("createdon", D), ("versionnumber", L), ("_businessunitid_value", G),
    ("name", S), ("_createdby_value", G), ("_parentroleid_value", G), ("overriddencreatedon", D),
    ("importsequencenumber", I32), ("_modifiedonbehalfby_value", G), ("_roletemplateid_value", G),
    ("_createdonbehalfby_value", G), ("iscustomizable", C), ("canbedeleted", C),
)  # fmt: skip

_BUSINESSUNIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("businessunitid", G), ("name", S), ("_parentbusinessunitid_value", G), ("isdisabled", B),
    ("organizationid", G), ("divisionname", S), ("emailaddress", S), ("costcenter", S), ("description", S),
    ("websiteurl", S), ("inheritancemask", I32), ("workflowsuspended", B), ("_calendarid_value", G),
    ("address1_addressid", G), ("address2_addressid", G), ("_transactioncurrencyid_value", G),
    ("utcoffset", I32), ("createdon", D), ("modifiedon", D), ("_createdby_value", G), ("_modifiedby_value", G),
    ("versionnumber", L),
)  # fmt: skip


@dataclass(frozen=True)
class Navigation:
    target: str  # entity set of the related rows
    collection: bool


@dataclass(frozen=True)
class Lookup:
    navigation: str  # single-valued navigation property behind a ``_x_value`` column
    target_logical_name: str


@dataclass(frozen=True)
class Table:
    logical_name: str
    entity_set: str
    key: str
    columns: dict[str, str]  # column -> EDM type, in wire order
    navigations: dict[str, Navigation] = field(default_factory=dict)
    lookups: dict[str, Lookup] = field(default_factory=dict)
    read_only: frozenset[str] = frozenset()

    @property
    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"


SYSTEMUSER = Table(
    "systemuser",
    "systemusers",
    "systemuserid",
    dict(_SYSTEMUSER_COLUMNS),
    navigations={
        "systemuserroles_association": Navigation("roles", collection=True),
        "businessunitid": Navigation("businessunits", collection=False),
    },
    lookups={"_businessunitid_value": Lookup("businessunitid", "businessunit")},
    # Columns the server fills and a client may not set (Dataverse: IsValidForUpdate = false).
    read_only=frozenset(
        {
            "fullname",
            "azureactivedirectoryobjectid",
            "applicationiduri",
            "yomifullname",
            "accessmode",
            "createdon",
            "modifiedon",
            "versionnumber",
            "organizationid",
            "identityid",
            "_businessunitid_value",
        }
    ),
)
ROLE = Table(
    "role",
    "roles",
    "roleid",
    dict(_ROLE_COLUMNS),
    navigations={"businessunitid": Navigation("businessunits", collection=False)},
    lookups={"_businessunitid_value": Lookup("businessunitid", "businessunit")},
)
BUSINESSUNIT = Table(
    "businessunit",
    "businessunits",
    "businessunitid",
    dict(_BUSINESSUNIT_COLUMNS),
    navigations={"parentbusinessunitid": Navigation("businessunits", collection=False)},
    lookups={"_parentbusinessunitid_value": Lookup("parentbusinessunitid", "businessunit")},
)
TABLES: dict[str, Table] = {t.entity_set: t for t in (SYSTEMUSER, ROLE, BUSINESSUNIT)}


def etag(version: int) -> str:
    return f'W/"{version}"'


def systemuser_row(env: DataverseEnvironment, user: ApplicationUser) -> dict[str, Any]:
    """The full ``systemuser`` row of an application user (``accessmode`` 4, ``applicationid`` set)."""
    values: dict[str, Any] = {
        "ownerid": user.id,
        "accessmode": 4,  # non-interactive
        "azurestate": 0,
        "internalemailaddress": user.email,
        "address1_addressid": user.address1_id,
        "organizationid": env.organization_id,
        "_createdby_value": user.created_by,
        "azureactivedirectoryobjectid": user.object_id,
        "address1_shippingmethodcode": 1,
        "caltype": 0,
        "yomifullname": user.display_name,
        "_modifiedby_value": user.modified_by,
        "applicationiduri": None,
        "incomingemaildeliverymethod": 0,
        "displayinserviceviews": False,
        "firstname": "#",
        "setupuser": False,
        "address1_addresstypecode": 1,
        "address2_addresstypecode": 1,
        "preferredphonecode": 1,
        "isdisabled": user.disabled,
        "address2_shippingmethodcode": 1,
        "fullname": user.display_name,
        "_calendarid_value": user.calendar_id,
        "invitestatuscode": 0,
        "modifiedon": user.modified_on,
        "defaultodbfoldername": "Dynamics365",
        "identityid": user.identity_id,
        "isemailaddressapprovedbyo365admin": False,
        "lastname": user.display_name,
        "issyncwithdirectory": False,
        "userlicensetype": 0,
        "islicensed": False,
        "_queueid_value": user.queue_id,
        "_businessunitid_value": user.business_unit_id,
        "deletedstate": 0,
        "applicationid": user.application_id,
        "defaultfilterspopulated": False,
        "_defaultmailbox_value": user.mailbox_id,
        "systemuserid": user.id,
        "windowsliveid": user.email,
        "address2_addressid": user.address2_id,
        "emailrouteraccessapproval": 0,
        "preferredaddresscode": 1,
        "preferredemailcode": 1,
        "domainname": user.email,
        "isintegrationuser": False,
        "createdon": user.created_on,
        "outgoingemaildeliverymethod": 0,
        "versionnumber": user.version,
    }
    return _ordered(SYSTEMUSER, values, user.version)


def role_row(env: DataverseEnvironment, role: SecurityRole) -> dict[str, Any]:
    values: dict[str, Any] = {
        "overwritetime": "1900-01-01T00:00:00Z",
        "organizationid": env.organization_id,
        "isinherited": 1,
        "solutionid": role.solution_id,
        "roleidunique": role.unique_id,
        "ismanaged": role.managed,
        "roleid": role.id,
        "componentstate": 0,
        "modifiedon": role.created_on,
        "_modifiedby_value": env.system_user_id,
        "_parentrootroleid_value": role.parent_root_role_id,
        "createdon": role.created_on,
        "versionnumber": role.version,
        "_businessunitid_value": role.business_unit_id,
        "name": role.name,
        "_createdby_value": env.system_user_id,
        "_parentroleid_value": role.parent_role_id,
        "_roletemplateid_value": role.template_id,
        "iscustomizable": {
            "Value": not role.managed,
            "CanBeChanged": not role.managed,
            "ManagedPropertyLogicalName": "iscustomizableanddeletable",
        },
        "canbedeleted": {
            "Value": not role.managed,
            "CanBeChanged": not role.managed,
            "ManagedPropertyLogicalName": "canbedeleted",
        },
    }
    return _ordered(ROLE, values, role.version)


def business_unit_row(env: DataverseEnvironment, unit: BusinessUnit) -> dict[str, Any]:
    values: dict[str, Any] = {
        "businessunitid": unit.id,
        "name": unit.name,
        "_parentbusinessunitid_value": unit.parent_id,
        "isdisabled": False,
        "organizationid": env.organization_id,
        "inheritancemask": 1023,
        "workflowsuspended": False,
        "_calendarid_value": unit.calendar_id,
        "address1_addressid": unit.address1_id,
        "address2_addressid": unit.address2_id,
        "createdon": unit.created_on,
        "modifiedon": unit.created_on,
        "_createdby_value": env.system_user_id,
        "_modifiedby_value": env.system_user_id,
        "versionnumber": unit.version,
    }
    return _ordered(BUSINESSUNIT, values, unit.version)


def _ordered(table: Table, values: dict[str, Any], version: int) -> dict[str, Any]:
    row: dict[str, Any] = {"@odata.etag": etag(version)}
    for column in table.columns:
        row[column] = values.get(column)
    return row
