from django.db import models


class Order(models.Model):
    email = models.EmailField()
    receipt_sent = models.BooleanField(default=False)
    shipped = models.BooleanField(default=False)
    fulfilled = models.BooleanField(default=False)
