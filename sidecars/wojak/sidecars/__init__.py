"""Source sidecars: each translates one broker's messages into engine requests."""
