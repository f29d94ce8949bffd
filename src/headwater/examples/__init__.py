"""Example flows shipped with headwater: ``headwater quickstart`` registers and runs them."""
