"""Closing a truncated JSON answer: the shortest valid completion (incremental Closer and its reference), partial JSON, grammar leaves."""
