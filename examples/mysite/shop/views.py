from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt

import leek

from .models import Order
from .tasks import mark_shipped, send_receipt

try:
    from django.tasks import default_task_backend
except ImportError:
    from django_tasks import default_task_backend


@csrf_exempt
def place_order(request: HttpRequest) -> JsonResponse:
    order = Order.objects.create(email=request.POST["email"])
    # Inside the request's transaction (ATOMIC_REQUESTS): the push is sent at the commit,
    # but the result id exists already.
    result = send_receipt.enqueue(order.id)
    return JsonResponse({"order": order.id, "task": result.id})


@csrf_exempt
def ship_order(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id)
    task_id = leek.push(mark_shipped, (order.id,), on_commit=True)
    return JsonResponse({"order": order.id, "task": task_id})  # None: sent at the commit


def order(request: HttpRequest, order_id: int) -> JsonResponse:
    o = get_object_or_404(Order, pk=order_id)
    return JsonResponse(
        {"receipt_sent": o.receipt_sent, "shipped": o.shipped, "fulfilled": o.fulfilled}
    )


def task_result(request: HttpRequest, result_id: str) -> JsonResponse:
    result = default_task_backend.get_result(result_id)
    value = result.return_value if result.status == "SUCCESSFUL" else None
    return JsonResponse({"status": str(result.status), "value": value})


@csrf_exempt
@transaction.non_atomic_requests  # create_job is answered once leekd committed the job
def fulfil_order(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id)
    return JsonResponse({"job": leek.create_job("fulfil_order", workspace={"order": order.id})})
