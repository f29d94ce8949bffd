"""Registering a flow: the documented import path of ``register_flow``; the code is ``headwater.client.registration``.

Registration is the client's side of the API (storage, then metadata to the server), so it
lives in the client package; ``flow.register()`` and ``Client.register()`` forward there.
"""

from headwater.client.registration import RegistrationError, check_labels, executor_note, register_flow

__all__ = ["RegistrationError", "check_labels", "executor_note", "register_flow"]
