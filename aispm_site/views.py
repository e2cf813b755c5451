from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .context_processors import workspaces_for


@require_GET
@login_required
def home(request):
    context = {
        "workspaces": workspaces_for(request.user),
        "role_names": sorted(request.user.groups.values_list("name", flat=True)),
    }
    return render(request, "home.html", context)


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})
