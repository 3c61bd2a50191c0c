"""Collection: a design's query run against each arena, turned into rows and written once per item.

``run`` drives one arena for one corpus; ``arenas/`` talk to the platforms; ``records`` validates,
dates, fingerprints (``text``) and pseudonymises (``privacy``) what they return; ``ingest`` writes it;
``credits`` reserves and settles what it costs (``tiers``); ``designs`` reads query designs and the
corpus value every later step takes.
"""
