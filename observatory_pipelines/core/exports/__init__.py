"""Exports: the files researchers download (``writers``, ``gexf``, ``manifest``), where they are
stored (``layout``), and who may fetch them (``access``)."""
