"""The shop's background work. leekd imports this module at start (autodiscovery)."""

try:
    from django.tasks import task  # Django 6
except ImportError:
    from django_tasks import task  # Django 5.2 with the backport

import leek

from .models import Order


@task(queue_name="mail")
def send_receipt(order_id):
    """A standard Django task: enqueued with .enqueue(), its result read with get_result()."""
    order = Order.objects.get(pk=order_id)  # committed: the enqueue waited for the commit
    order.receipt_sent = True
    order.save(update_fields=["receipt_sent"])
    return f"receipt sent to {order.email}"


def mark_shipped(order_id):
    """A plain function, pushed with leek.push(..., on_commit=True)."""
    Order.objects.filter(pk=order_id).update(shipped=True)
    return order_id


@leek.periodic(cron="0 3 * * *")  # every night at 03:00; leekd runs it, no cron needed
def nightly_summary():
    """A periodic job: registered when leekd imports this module at start."""
    return Order.objects.filter(shipped=False).count()
