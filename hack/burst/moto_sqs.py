"""moto_server whose SQS queue attributes are computed when read.

moto 5.2.1's Queue.attributes builds every attribute of a queue, three of
them by scanning all its messages, each time any one is read; and moto reads
one for every message it sends (ContentBasedDeduplication) and receives
(MessageRetentionPeriod). A queue holding n messages so costs O(n) per
message. Profiled (cProfile over every request) with 1,000 messages queued:
97% of ReceiveMessage's time; sending and receiving 1,000 messages in
batches of 10 took 40 s. Here each attribute is computed when it is read:
the same 1,000 take 3 s, and the controller, not the emulator, sets the
burst's pace.

Answers are moto's own (the same queue attributes, FIFO deduplication and
DLQ redrive as moto_server); only the cost changes. The burst bench runs its
SQS on this by default (-moto-sqs fast); make test runs moto_server as is.

Usage: python3 moto_sqs.py [moto_server arguments]
"""

import json
import sys
from collections.abc import Mapping

from moto.core.utils import camelcase_to_underscores
from moto.sqs.models import Queue


class QueueAttributes(Mapping):
    """The names and values of moto's Queue.attributes, each computed on
    access rather than all of them up front."""

    def __init__(self, queue):
        self._queue = queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        self._names = names

    def __getitem__(self, name):
        if name not in self._names:
            raise KeyError(name)
        queue = self._queue
        if name == "Policy" and queue.policy:
            return queue.policy
        if name == "RedrivePolicy" and queue.redrive_policy:
            return json.dumps(queue.redrive_policy)
        value = getattr(queue, camelcase_to_underscores(name))
        if isinstance(value, bool):
            return str(value).lower()
        return value

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)


Queue.attributes = property(QueueAttributes)

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
