"""What headwater's AWS pieces share: clients made from a session of their own, AWS errors in
words, and ECS task definitions and tasks (``ecs.py``). ``boto3`` (the ``aws`` extra) is
imported only when a client is made."""
