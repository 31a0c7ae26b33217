"""magicoin p2p package."""
