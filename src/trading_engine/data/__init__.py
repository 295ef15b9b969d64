"""Candle data: schema, storage, sources and quality."""
