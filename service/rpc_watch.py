"""Batcher.infer's `watch` for a servicer context: tell the batcher when a request's RPC ends, and why."""

from service.batcher import Leave, Watch

# gRPC tells a handler only that its RPC ended, not why. A client's own deadline reaches us as such an
# end up to one transit time before our copy of that deadline (started when the request arrived) passes:
# an end this close to our copy is the deadline's. Only the DEADLINE_EXCEEDED/CANCELLED label of an RPC
# already over depends on it (the client saw its own code); the batcher's own timers need no such rule.
CLIENT_DEADLINE_LEAD_S = 0.05


def rpc_watch(context) -> Watch:
    """A grpc.ServicerContext, or service.http_calls.HttpContext (which knows why its request ended)."""

    def watch(on_end) -> None:
        # Most RPCs end after their answer: an on_end that can tell (Batcher's) is asked first, and then
        # there is nothing to leave and no reason to work out.
        waiting = getattr(on_end, "waiting", None)

        def ended() -> None:
            if waiting is None or waiting():
                on_end(end_reason(context))

        if not context.add_callback(ended):  # the RPC has ended already
            ended()

    return watch


def end_reason(context) -> Leave:
    """Why the context's RPC ended: what the context says, else (gRPC) judged by its deadline."""
    said = getattr(context, "end_reason", None)
    if said is not None:
        return said()
    left = context.time_remaining()
    return Leave.DEADLINE if left is not None and left <= CLIENT_DEADLINE_LEAD_S else Leave.CANCELLED
