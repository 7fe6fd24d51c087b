"""keysentry for Django and Django REST framework (extras ``django`` and ``drf``).

::

    INSTALLED_APPS = [..., "keysentry.django"]           # the keys, in the project's database
    MIDDLEWARE = ["keysentry.django.middleware.KeysentryMiddleware", ...]
    KEYSENTRY = {"SECRET": os.environ["KEYSENTRY_SECRET"], "EXEMPT": ["/admin/*"]}

Then ``python manage.py migrate``, ``python manage.py keysentry keys create --name ci``, and
every request but the exempt ones needs a key; views read ``request.api_key``.

* ``conf.py``: ``settings.KEYSENTRY`` -> the process's guard;
* ``models.py``, ``store.py``: the keys as rows, and the ``KeyStore`` over the ORM;
* ``middleware.py``: the driver (sync and async);
* ``drf.py``: DRF's authentication and permission classes (``HasAPIKey``, ``HasScopes``);
* ``admin.py``: the keys in the admin site; ``management/commands/keysentry.py``: the command;
* ``drf_api_key.py``: keys imported from djangorestframework-api-key.

Importing this package imports nothing of Django: the app's modules are loaded by Django.
"""
