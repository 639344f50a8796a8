from rest_framework.views import APIView


class RunList(APIView):  # replaced by the API work
    pass


class RunDetail(APIView):  # replaced by the API work
    pass
