"""Who uses the observatory and what it holds for them: user accounts, and the arenas' API
credentials (encrypted at rest, handed out by a pool that counts each use against its quota)."""
