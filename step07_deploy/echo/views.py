from django.shortcuts import render


def echo_page(request):
    """The page with the button that tries a WebSocket to /ws/echo/."""
    return render(request, "echo/echo_page.html")
