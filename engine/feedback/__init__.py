"""Feedback: verify what actions did, turn outcomes into reward, and learn (the healer loop)."""
