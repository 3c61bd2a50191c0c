"""Analysis: one corpus loaded columnar (``corpus``), its statistics and networks, kept as Parquet
in the analysis store (``store``)."""
