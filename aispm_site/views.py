from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
@login_required
def home(request):
    return render(request, "home.html")


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})
