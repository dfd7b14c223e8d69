"""Decision: what the loop sees of an incident (state), and the policies that choose a recovery action."""
