"""Entity resolution: which authors are the same person or organisation, and merging or splitting
actors once a curator has decided.

Suggestions (``suggestions.py``): per month and across every query design, because actors are
global, each author active in the month is compared with the others and with the actor registry
by exact name, shared username and fuzzy name; the rules and their limits are in that module's
docstring. Curation (``curation.py``): merge and split change actors in one transaction each,
validate everything before the first write, and write a row to ``actor_audit_log``. Callers import
from this package, which re-exports the public names of both.
"""

from observatory_pipelines.core.processing.entities.curation import (
    ALIAS_FROM_MERGE,
    ALIAS_FROM_SPLIT,
    MergeResult,
    SplitResult,
    merge_actors,
    split_actor,
)
from observatory_pipelines.core.processing.entities.suggestions import (
    BLOCK_PREFIX,
    CDIST_ROWS,
    COUNTRY_SUFFIXES,
    EXACT_SCORE,
    FUZZY_THRESHOLD,
    LOOSE_HANDLE_SCORE,
    MAX_SHARED_NAME,
    MIN_FUZZY_LETTERS,
    MIN_LOOSE_HANDLE,
    OUTLET_PLATFORMS,
    RULES,
    Side,
    Suggestion,
    SuggestionResult,
    fold_name,
    handle_keys,
    normalise_name,
    suggest_matches,
    suggestions_markdown,
)

__all__ = [
    "ALIAS_FROM_MERGE",
    "ALIAS_FROM_SPLIT",
    "BLOCK_PREFIX",
    "CDIST_ROWS",
    "COUNTRY_SUFFIXES",
    "EXACT_SCORE",
    "FUZZY_THRESHOLD",
    "LOOSE_HANDLE_SCORE",
    "MAX_SHARED_NAME",
    "MIN_FUZZY_LETTERS",
    "MIN_LOOSE_HANDLE",
    "OUTLET_PLATFORMS",
    "RULES",
    "MergeResult",
    "Side",
    "SplitResult",
    "Suggestion",
    "SuggestionResult",
    "fold_name",
    "handle_keys",
    "merge_actors",
    "normalise_name",
    "split_actor",
    "suggest_matches",
    "suggestions_markdown",
]
