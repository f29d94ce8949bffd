"""Queries, one module per resource. Each takes a Session, returns wire schemas, commits its writes.

No ORM object leaves this package; routes (``server/api``) call these and return what they give.
"""
