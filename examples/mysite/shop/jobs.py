"""The steps of the ``fulfil_order`` job (settings.LEEK["jobs"]); each gets the job."""

from .models import Order


def reserve_stock(job):
    order = Order.objects.get(pk=job.workspace["order"])
    job.workspace["reserved"] = [order.pk]  # saved with this step's outcome


def mark_fulfilled(job):
    Order.objects.filter(pk__in=job.workspace["reserved"]).update(fulfilled=True)
