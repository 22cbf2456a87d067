"""Run directories, append-only stage shards, resume, and the local asyncio executor."""
