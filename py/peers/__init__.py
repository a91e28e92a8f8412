"""Echo servers the workshop compares its own against: asyncio's, and one thread per connection.

Both follow the lab servers' contract: `--port 0` picks a free port, and the first line on
stdout is `listening on 127.0.0.1:PORT`.
"""
