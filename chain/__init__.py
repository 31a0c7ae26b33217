"""magicoin chain package."""
