"""Organizations for the local Label Studio, made inside its own venv (.venv-labelstudio); never
imported by Cantolab itself.

Open-source Label Studio has a model of several organizations (every project, task and annotation
query is filtered by the user's active organization) but no API to create one or to move a user
into one (its sign-up always joins the first). `cantolab annotate setup` runs this script with the
server's environment to give each person on the roster an organization of their own:
- the organization is owned by a service user `cantolab-sync+<hash>@cantolab.local` whose token
  the sync uses for that person's projects (the person's own token is never needed);
- a person who already has an account is moved into it (out of every other organization), and the
  placement file maps their e-mail to it so that one who signs up later is moved at once
  (annotation/labelstudio_launch.py).

stdin: {"people": [{"email", "title", "service_email"}], "placement": PATH}
stdout: {"orgs": {email: {"org_id", "service_token", "joined"}}}

It also answers what Label Studio's API does not expose, the task locks (a task opened in the
labeling page is locked to that person until they submit, skip or the lock expires):
stdin: {"locks": [project ids]}   stdout: {"locks": {project id: {e-mail: unlabeled tasks locked}}}
"""

from __future__ import annotations

import json
import os
import sys


def _setup_django() -> None:
    import label_studio.server as ls_server

    ls_server._setup_env()


def ensure(person: dict) -> dict:
    from django.db import transaction
    from organizations.models import Organization, OrganizationMember
    from rest_framework.authtoken.models import Token
    from users.models import User

    email = person["email"].lower()
    with transaction.atomic():
        service, _ = User.objects.get_or_create(email=person["service_email"], defaults={"username": person["service_email"].split("@")[0]})
        if service.has_usable_password():
            service.set_unusable_password()  # a token-only account: nobody logs in as it
            service.save()
        org = Organization.objects.filter(created_by=service).first()
        if org is None:
            org = Organization.create_organization(created_by=service, title=person["title"])
        if service.active_organization_id != org.id:
            service.active_organization = org
            service.save(update_fields=["active_organization"])
        token, _ = Token.objects.get_or_create(user=service)
        joined = False
        user = User.objects.filter(email__iexact=email).first()
        if user is not None:
            OrganizationMember.objects.filter(user=user).exclude(organization=org).delete()
            OrganizationMember.objects.get_or_create(user=user, organization=org, defaults={})
            OrganizationMember.objects.filter(user=user, organization=org).update(deleted_at=None)
            User.objects.filter(pk=user.pk).update(active_organization=org)
            joined = True
    return {"org_id": org.id, "service_token": token.key, "joined": joined}


def locks(project_ids: list[int]) -> dict[str, dict[str, int]]:
    """Unexpired locks on tasks that have no submitted or skipped annotation yet, per project and person."""
    from django.db.models import Count
    from django.utils import timezone
    from tasks.models import TaskLock

    rows = (
        TaskLock.objects.filter(task__project_id__in=project_ids, expire_at__gt=timezone.now(), task__annotations__isnull=True)
        .values("task__project_id", "user__email")
        .annotate(n=Count("task_id", distinct=True))
    )
    out: dict[str, dict[str, int]] = {str(p): {} for p in project_ids}
    for r in rows:
        out[str(r["task__project_id"])][(r["user__email"] or "").lower()] = r["n"]
    return out


def main() -> None:
    request = json.load(sys.stdin)
    result, sys.stdout = sys.stdout, sys.stderr  # whatever Django prints stays out of the answer
    _setup_django()
    if "locks" in request:
        json.dump({"locks": locks([int(p) for p in request["locks"]])}, result)
        return
    out = {p["email"].lower(): ensure(p) for p in request["people"]}
    placement = request.get("placement")
    if placement:
        try:
            with open(placement) as fh:
                placed = json.load(fh)
        except (OSError, ValueError):
            placed = {}
        placed.update({e: v["org_id"] for e, v in out.items()})
        tmp = f"{placement}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(placed, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, placement)
    json.dump({"orgs": out}, result)


if __name__ == "__main__":
    main()
