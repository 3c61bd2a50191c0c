"""The researcher portal: sign in, see your corpora, download your exports, script it with a token.

A FastAPI app with server-rendered pages and no JavaScript build step. It holds no SQL and no
access rule of its own: accounts come from ``core.accounts``, what a person may see from
``core.exports.access`` (``may_see``), and what a corpus holds from ``core.corpora``. The Dagster UI
stays the data engineers' tool; this is the one service meant to face researchers.
"""
