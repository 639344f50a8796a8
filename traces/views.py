from django.http import HttpResponse


def _pending(request, *args, **kwargs):  # replaced by the pages work
    return HttpResponse("pending", status=501)


run_list = run_detail = project_list = key_create = key_revoke = price_list = _pending
