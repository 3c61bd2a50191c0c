"""Every table of the content database, as SQLAlchemy 2 models on one ``Base``.

Importing this package registers all models on ``Base.metadata``.
"""

from observatory_pipelines.core.models.actors import Actor, ActorAlias, ActorListMember, ActorPlatformPresence
from observatory_pipelines.core.models.base import NAMING_CONVENTION, TIERS, Base, TimestampMixin
from observatory_pipelines.core.models.collection import (
    CollectionCheckpoint,
    CollectionRun,
    CollectionTask,
    CreditTransaction,
    SourceYield,
)
from observatory_pipelines.core.models.content import (
    CORPUS_ITEM_CONSTRAINT,
    FULLTEXT_DOCUMENT_SQL,
    ITEM_COPY_KIND,
    ContentItem,
    ContentRecord,
)
from observatory_pipelines.core.models.credentials import ApiCredential
from observatory_pipelines.core.models.entities import ActorAuditLog, ActorMatchSuggestion
from observatory_pipelines.core.models.query_design import ActorList, DesignChange, QueryDesign, SearchTerm
from observatory_pipelines.core.models.users import (
    ApiToken,
    CreditAllocation,
    ExportDownload,
    Invitation,
    PortalSession,
    SignInFailure,
    User,
)

__all__ = [
    "Actor",
    "ActorAlias",
    "ActorAuditLog",
    "ActorList",
    "ActorListMember",
    "ActorMatchSuggestion",
    "ActorPlatformPresence",
    "ApiCredential",
    "Base",
    "CORPUS_ITEM_CONSTRAINT",
    "CollectionCheckpoint",
    "CollectionRun",
    "CollectionTask",
    "ContentItem",
    "ContentRecord",
    "CreditAllocation",
    "CreditTransaction",
    "DesignChange",
    "FULLTEXT_DOCUMENT_SQL",
    "ITEM_COPY_KIND",
    "NAMING_CONVENTION",
    "QueryDesign",
    "ApiToken",
    "ExportDownload",
    "Invitation",
    "PortalSession",
    "SignInFailure",
    "SearchTerm",
    "SourceYield",
    "TIERS",
    "TimestampMixin",
    "User",
]
