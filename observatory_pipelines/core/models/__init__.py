"""Every table of the content database, as SQLAlchemy 2 models on one ``Base``.

Importing this package registers all models on ``Base.metadata``.
"""

from .actors import Actor, ActorAlias, ActorListMember, ActorPlatformPresence
from .base import NAMING_CONVENTION, TIERS, Base, TimestampMixin
from .collection import CollectionRun, CollectionTask, CreditTransaction
from .content import CORPUS_ITEM_CONSTRAINT, FULLTEXT_DOCUMENT_SQL, ContentRecord
from .credentials import ApiCredential
from .entities import ActorAuditLog, ActorMatchSuggestion
from .query_design import ActorList, QueryDesign, SearchTerm
from .users import CreditAllocation, RefreshToken, User

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
    "CollectionRun",
    "CollectionTask",
    "ContentRecord",
    "CreditAllocation",
    "CreditTransaction",
    "FULLTEXT_DOCUMENT_SQL",
    "NAMING_CONVENTION",
    "QueryDesign",
    "RefreshToken",
    "SearchTerm",
    "TIERS",
    "TimestampMixin",
    "User",
]
