"""The asyncio transport: listening, connections, the dispatch of requests."""
