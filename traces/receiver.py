from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def otlp_traces(request):  # replaced by the receiver work
    return HttpResponse(status=501)
