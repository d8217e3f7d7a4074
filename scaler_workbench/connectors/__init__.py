"""Connectors: everything between a provider profile and raw records.

==================  =========================================================================
module              what
==================  =========================================================================
``auth``            API key, Basic, bearer, OAuth2 (client credentials, password, auth code)
``paginate``        offset, page number, cursor, next URL, Link header, none; loop guard
``dates``           date-range parameters, calendar chunks, learned maximum span
``client``          the only HTTP sender: retries, budget, allowed hosts, record/replay
``resources``       declarative ``[resources.X]``, parents, ``Connector``, ``fetch_resources``
``probe``           detect/probe pagination, dry-run request plans
``<provider>``      a ``Connector`` subclass for an API a profile cannot express
==================  =========================================================================

Start with :func:`fetch_resources` (what sync uses) or a :class:`Client` in a notebook::

    client = Client(profile)
    body, response = client.get("/sites")
    print(probe_pagination(client, "/sites"))
    for page in client.iter_pages("meters", path_params={"site_id": "S001"}):
        ...
"""

from __future__ import annotations

from scaler_workbench.connectors.auth import (
    AUTHS,
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    NoAuth,
    OAuth2AuthorizationCode,
    OAuth2ClientCredentials,
    OAuth2PasswordGrant,
    TokenFile,
    authorize,
    make_auth,
    register_auth,
)
from scaler_workbench.connectors.client import Budget, Client, Reply, RetryPolicy
from scaler_workbench.connectors.dates import DateRange, make_date_range, split_range
from scaler_workbench.connectors.paginate import (
    PAGINATORS,
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageRequest,
    PageResponse,
    Paginator,
    SinglePagePaginator,
    make_paginator,
    register_paginator,
)
from scaler_workbench.connectors.probe import (
    RequestPlan,
    detect_pagination,
    plan_requests,
    probe_pagination,
)
from scaler_workbench.connectors.resources import (
    Connector,
    FetchReport,
    FetchResult,
    Page,
    ResourceSpec,
    connector_for,
    fetch_resources,
)

__all__ = [
    "AUTHS",
    "PAGINATORS",
    "ApiKeyAuth",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "Budget",
    "Client",
    "Connector",
    "CursorPaginator",
    "DateRange",
    "FetchReport",
    "FetchResult",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "NoAuth",
    "OAuth2AuthorizationCode",
    "OAuth2ClientCredentials",
    "OAuth2PasswordGrant",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "PageResponse",
    "Paginator",
    "Reply",
    "RequestPlan",
    "ResourceSpec",
    "RetryPolicy",
    "SinglePagePaginator",
    "TokenFile",
    "authorize",
    "connector_for",
    "detect_pagination",
    "fetch_resources",
    "make_auth",
    "make_date_range",
    "make_paginator",
    "plan_requests",
    "probe_pagination",
    "register_auth",
    "register_paginator",
    "split_range",
]
