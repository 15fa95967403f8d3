"""Every visible string of the panel, in French and English.

A flat catalog {key: {"fr": ..., "en": ...}} rather than gettext: two languages, a few
hundred strings, no build step on the Pi, and a test can check that every key has both
languages and every key a template uses exists. French is the default because the
people running a rural telecentre in France read it first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app, g, has_app_context, has_request_context, request

log = logging.getLogger(__name__)

LANGUAGES = ("fr", "en")


def current_language() -> str:
    """The cookie set by the language switch, else the site's configured language."""
    if has_request_context():
        lang = g.get("lang")
        if lang is None:
            lang = request.cookies.get("lang")
            if lang not in LANGUAGES:
                lang = _site_language()
            g.lang = lang
        return lang
    return _site_language()


def _site_language() -> str:
    if has_app_context():
        config = current_app.extensions.get("appliance_config")
        if config is not None and config.language in LANGUAGES:
            return config.language
    return "fr"


def translate(key: str, **kwargs: Any) -> str:
    """The text for `key` in the current language, with {placeholders} filled in."""
    entry = CATALOG.get(key)
    if entry is None:
        # A missing key is a bug the catalog test catches; showing the key beats a 500.
        log.error("missing i18n key %r", key)
        return key
    text = entry[current_language()]
    return text.format(**kwargs) if kwargs else text


def pick(messages: Mapping[str, str] | None) -> str:
    """One language out of a {"fr", "en"} message from another module (InvalidInput, policy)."""
    if not messages:
        return ""
    return messages.get(current_language()) or messages.get("fr") or ""


def day_name(weekday: int) -> str:
    return translate(f"day.{weekday}")


CATALOG: dict[str, dict[str, str]] = {
    # --- layout ---------------------------------------------------------------------------
    "app.title": {"fr": "Panneau d'administration", "en": "Admin panel"},
    "nav.dashboard": {"fr": "Tableau de bord", "en": "Dashboard"},
    "nav.members": {"fr": "Membres", "en": "Members"},
    "nav.log": {"fr": "Journal", "en": "Log"},
    "nav.plans": {"fr": "Forfaits", "en": "Plans"},
    "nav.door": {"fr": "Porte", "en": "Door"},
    "nav.line": {"fr": "Ligne", "en": "Line"},
    "nav.wifi": {"fr": "Wi-Fi", "en": "Wi-Fi"},
    "nav.logout": {"fr": "Se déconnecter", "en": "Log out"},
    "nav.menu": {"fr": "Menu principal", "en": "Main menu"},
    "nav.signed_in_as": {"fr": "Connecté : {name}", "en": "Signed in: {name}"},
    "role.admin": {"fr": "administrateur", "en": "administrator"},
    "role.staff": {"fr": "consultation seule", "en": "read-only"},
    "lang.switch_to": {"fr": "English", "en": "Français"},
    "lang.switch_title": {"fr": "Switch to English", "en": "Passer en français"},
    "common.save": {"fr": "Enregistrer", "en": "Save"},
    "common.cancel": {"fr": "Annuler", "en": "Cancel"},
    "common.search": {"fr": "Rechercher", "en": "Search"},
    "common.filter": {"fr": "Filtrer", "en": "Filter"},
    "common.reset": {"fr": "Effacer les filtres", "en": "Clear filters"},
    "common.next": {"fr": "Suivants →", "en": "Next →"},
    "common.previous": {"fr": "← Précédents", "en": "← Previous"},
    "common.older": {"fr": "Plus anciens →", "en": "Older →"},
    "common.newest": {"fr": "← Plus récents", "en": "← Newest"},
    "common.none": {"fr": "—", "en": "—"},
    "common.yes": {"fr": "Oui", "en": "Yes"},
    "common.no": {"fr": "Non", "en": "No"},
    "common.back": {"fr": "Retour", "en": "Back"},
    "common.seconds_unit": {"fr": "s", "en": "s"},
    "common.form_errors": {
        "fr": "Certains champs sont à corriger (voir en rouge ci-dessous). Rien n'a été perdu.",
        "en": "Some fields need fixing (see in red below). Nothing was lost.",
    },
    "common.readonly_notice": {
        "fr": "Compte en consultation seule : vous pouvez tout voir, mais pas modifier.",
        "en": "Read-only account: you can see everything but not change anything.",
    },
    # --- errors ---------------------------------------------------------------------------
    "error.title": {"fr": "Erreur", "en": "Error"},
    "error.403": {
        "fr": "Action réservée aux administrateurs. Votre compte est en consultation seule.",
        "en": "Only administrators can do this. Your account is read-only.",
    },
    "error.404": {"fr": "Page introuvable.", "en": "Page not found."},
    "error.413": {
        "fr": "Formulaire trop volumineux : raccourcissez le texte et réessayez.",
        "en": "Form too large: shorten the text and try again.",
    },
    "error.500": {
        "fr": "Erreur interne du panneau. Réessayez ; si cela continue, redémarrez le boîtier.",
        "en": "Internal panel error. Try again; if it persists, restart the box.",
    },
    "error.csrf": {
        "fr": "Le formulaire a expiré ou ne vient pas de ce panneau. Revenez en arrière, "
        "rechargez la page et recommencez.",
        "en": "The form has expired or did not come from this panel. Go back, reload the "
        "page and try again.",
    },
    "error.home": {"fr": "Retour au tableau de bord", "en": "Back to the dashboard"},
    # --- login ----------------------------------------------------------------------------
    "login.title": {"fr": "Connexion", "en": "Sign in"},
    "login.username": {"fr": "Identifiant", "en": "Username"},
    "login.password": {"fr": "Mot de passe", "en": "Password"},
    "login.submit": {"fr": "Se connecter", "en": "Sign in"},
    "login.bad_credentials": {
        "fr": "Identifiant ou mot de passe incorrect.",
        "en": "Wrong username or password.",
    },
    "login.rate_limited": {
        "fr": "Trop de tentatives de connexion. Réessayez dans {minutes} min.",
        "en": "Too many sign-in attempts. Try again in {minutes} min.",
    },
    "login.help": {
        "fr": "Mot de passe oublié ? Sur le boîtier : telecentre admin passwd <identifiant>.",
        "en": "Forgot the password? On the box: telecentre admin passwd <username>.",
    },
    "auth.session_expired": {
        "fr": "Session expirée : reconnectez-vous.",
        "en": "Session expired: sign in again.",
    },
    # --- door (shared) --------------------------------------------------------------------
    "door.unreachable": {
        "fr": "Le service de la porte ne répond pas : l'état de la porte, l'ouverture à "
        "distance et l'enrôlement des badges sont indisponibles pour le moment. Les membres "
        "et le journal restent utilisables. Si cela dure, redémarrez le boîtier.",
        "en": "The door service is not responding: the door state, remote unlock and badge "
        "enrollment are unavailable for now. Members and the log still work. If this lasts, "
        "restart the box.",
    },
    "door.refused": {
        "fr": "La porte a refusé la commande ({detail}).",
        "en": "The door refused the command ({detail}).",
    },
    "door.state.locked": {"fr": "Verrouillée", "en": "Locked"},
    "door.state.unlocked": {"fr": "Déverrouillée", "en": "Unlocked"},
    "door.state.open": {"fr": "Ouverte", "en": "Open"},
    "door.state.held_open": {"fr": "Restée ouverte", "en": "Held open"},
    "door.state.unknown": {"fr": "Inconnu", "en": "Unknown"},
    "door.alarm.held_open": {
        "fr": "Alarme : la porte est restée ouverte trop longtemps",
        "en": "Alarm: the door has been held open too long",
    },
    "door.alarm.forced_open": {
        "fr": "Alarme : porte ouverte sans autorisation (forcée ?)",
        "en": "Alarm: door opened without authorization (forced?)",
    },
    "door.alarm.other": {"fr": "Alarme : {code}", "en": "Alarm: {code}"},
    "door.reader_up": {"fr": "Lecteur de badges : en service", "en": "Badge reader: working"},
    "sim.title": {"fr": "Simulateur (démonstration)", "en": "Simulator (demo)"},
    "sim.help": {
        "fr": "Ce télécentre tourne sur du matériel simulé : ces boutons font ce que ferait "
        "une personne devant la porte.",
        "en": "This telecentre runs on simulated hardware: these buttons do what a person at "
        "the door would do.",
    },
    "sim.uid": {"fr": "Numéro du badge (UID)", "en": "Badge number (UID)"},
    "sim.uid_help": {
        "fr": "8 ou 14 chiffres hexadécimaux, par exemple 04A1B2C3D4E5F6.",
        "en": "8 or 14 hexadecimal digits, for example 04A1B2C3D4E5F6.",
    },
    "sim.tap": {"fr": "Présenter ce badge", "en": "Tap this badge"},
    "sim.clone": {"fr": "Présenter une copie de l'UID", "en": "Tap a copy of the UID"},
    "sim.open": {"fr": "Ouvrir la porte", "en": "Open the door"},
    "sim.close": {"fr": "Fermer la porte", "en": "Close the door"},
    "sim.exit": {"fr": "Bouton de sortie", "en": "Exit button"},
    "sim.bad_action": {"fr": "Action inconnue.", "en": "Unknown action."},
    "sim.done.tap": {"fr": "Badge présenté au lecteur.", "en": "Badge tapped on the reader."},
    "sim.done.clone": {
        "fr": "Copie présentée : elle doit être refusée en mode jeton.",
        "en": "Copy tapped: it must be refused in token mode.",
    },
    "sim.done.open": {"fr": "Porte ouverte.", "en": "Door opened."},
    "sim.done.close": {"fr": "Porte fermée.", "en": "Door closed."},
    "sim.done.exit": {"fr": "Bouton de sortie appuyé.", "en": "Exit button pressed."},
    "door.reader_down": {
        "fr": "Lecteur de badges : hors service (vérifiez son câble)",
        "en": "Badge reader: not working (check its cable)",
    },
    "door.emulated": {
        "fr": "Mode démonstration : matériel simulé",
        "en": "Demo mode: simulated hardware",
    },
    "door.enrollment_running": {
        "fr": "Enrôlement en cours pour {name} : présentez le badge sur le lecteur.",
        "en": "Enrolling a badge for {name}: present the badge on the reader.",
    },
    "door.time_left": {"fr": "Temps restant :", "en": "Time left:"},
    "door.uid_only_warning": {
        "fr": "Attention : les badges sont vérifiés sur leur seul numéro de série (mode "
        "« uid-only »). Ce numéro se lit à distance et se recopie sur une carte vierge "
        "vendue quelques euros : un badge peut donc être copié. Pour l'éviter, passez "
        "card_mode = \"token\" dans le fichier de configuration et réenrôlez les badges.",
        "en": "Warning: badges are checked on their serial number only (\"uid-only\" mode). "
        "That number can be read from a distance and written onto a blank card sold for a "
        "few euros, so a badge can be copied. To prevent this, set card_mode = \"token\" in "
        "the configuration file and re-enroll the badges.",
    },
    # --- dashboard ------------------------------------------------------------------------
    "dashboard.title": {"fr": "Tableau de bord", "en": "Dashboard"},
    "dashboard.door": {"fr": "Porte", "en": "Door"},
    "dashboard.door_state": {"fr": "État de la porte", "en": "Door state"},
    "dashboard.no_alarm": {"fr": "Aucune alarme", "en": "No alarm"},
    "dashboard.events": {"fr": "Derniers passages", "en": "Latest events"},
    "dashboard.no_events": {"fr": "Aucun passage enregistré.", "en": "No event recorded."},
    "dashboard.live": {
        "fr": "Mise à jour automatique.",
        "en": "Updates automatically.",
    },
    "dashboard.offline": {
        "fr": "Connexion au panneau perdue : nouvel essai…",
        "en": "Lost contact with the panel: retrying…",
    },
    "dashboard.members": {"fr": "Membres actifs : {n}.", "en": "Active members: {n}."},
    "dashboard.open_door": {"fr": "Ouvrir la porte…", "en": "Unlock the door…"},
    "dashboard.full_log": {"fr": "Tout le journal", "en": "Full log"},
    # --- events / log ---------------------------------------------------------------------
    "event.time": {"fr": "Heure", "en": "Time"},
    "event.date": {"fr": "Date et heure", "en": "Date and time"},
    "event.result": {"fr": "Résultat", "en": "Result"},
    "event.reason": {"fr": "Motif", "en": "Reason"},
    "event.who": {"fr": "Qui", "en": "Who"},
    "event.badge": {"fr": "Badge", "en": "Badge"},
    "result.granted": {"fr": "Autorisé", "en": "Allowed"},
    "result.denied": {"fr": "Refusé", "en": "Denied"},
    "result.info": {"fr": "Info", "en": "Info"},
    "result.alarm": {"fr": "Alarme", "en": "Alarm"},
    "result.all": {"fr": "Tous", "en": "All"},
    "reason.all": {"fr": "Tous les motifs", "en": "All reasons"},
    # Reasons the door logs besides badge decisions (appliance.door.service).
    "reason.alarm_held_open": {
        "fr": "Alarme : porte restée ouverte trop longtemps",
        "en": "Alarm: door held open too long",
    },
    "reason.alarm_forced_open": {
        "fr": "Alarme : porte ouverte sans autorisation",
        "en": "Alarm: door opened without authorization",
    },
    "reason.alarm_cleared_held_open": {
        "fr": "Fin d'alarme : porte refermée",
        "en": "Alarm over: door closed again",
    },
    "reason.alarm_cleared_forced_open": {
        "fr": "Fin d'alarme (porte forcée) : porte refermée",
        "en": "Alarm over (forced door): door closed again",
    },
    "reason.enrollment_started": {
        "fr": "Enrôlement d'un badge lancé",
        "en": "Badge enrollment started",
    },
    "reason.enrollment_expired": {
        "fr": "Enrôlement terminé sans badge (temps écoulé)",
        "en": "Enrollment ended with no badge (time ran out)",
    },
    "reason.enrollment_card_taken": {
        "fr": "Enrôlement : ce badge appartient déjà à un membre (révoquez-le d'abord)",
        "en": "Enrollment: this badge already belongs to a member (revoke it first)",
    },
    "reason.enrollment_write_failed": {
        "fr": "Enrôlement échoué : badge retiré trop tôt ou illisible, recommencez",
        "en": "Enrollment failed: badge removed too soon or unreadable, try again",
    },
    "log.title": {"fr": "Journal des accès", "en": "Access log"},
    "log.from": {"fr": "Du", "en": "From"},
    "log.to": {"fr": "Au", "en": "To"},
    "log.text": {"fr": "Membre, badge ou admin", "en": "Member, badge or admin"},
    "log.export": {"fr": "Exporter en CSV (tableur)", "en": "Export as CSV (spreadsheet)"},
    "log.empty": {
        "fr": "Aucun passage ne correspond à ces filtres.",
        "en": "No event matches these filters.",
    },
    "log.bad_date": {
        "fr": "Date invalide : attendu AAAA-MM-JJ. Ce filtre est ignoré.",
        "en": "Invalid date: expected YYYY-MM-DD. This filter is ignored.",
    },
    "log.retention": {
        "fr": "Le journal est conservé {days} jours, puis effacé (recommandation CNIL).",
        "en": "The log is kept {days} days, then deleted (CNIL guidance).",
    },
    # --- members --------------------------------------------------------------------------
    "members.title": {"fr": "Membres", "en": "Members"},
    "members.add": {"fr": "Ajouter un membre", "en": "Add a member"},
    "members.search_placeholder": {
        "fr": "Nom, numéro ou e-mail",
        "en": "Name, number or e-mail",
    },
    "members.empty": {"fr": "Aucun membre trouvé.", "en": "No member found."},
    "members.badges_count": {"fr": "Badges", "en": "Badges"},
    "members.status": {"fr": "Statut", "en": "Status"},
    "members.status.ok": {"fr": "Actif", "en": "Active"},
    "members.status.suspended": {"fr": "Suspendu", "en": "Suspended"},
    "members.status.archived": {"fr": "Archivé", "en": "Archived"},
    "members.status.expired": {"fr": "Abonnement terminé", "en": "Membership ended"},
    "members.status.future": {"fr": "Pas encore commencé", "en": "Not started yet"},
    "members.new_title": {"fr": "Nouveau membre", "en": "New member"},
    "members.edit_title": {"fr": "Membre n° {number}", "en": "Member no. {number}"},
    "members.created": {
        "fr": "Membre enregistré. Vous pouvez maintenant enrôler son badge.",
        "en": "Member saved. You can now enroll their badge.",
    },
    "members.updated": {"fr": "Modifications enregistrées.", "en": "Changes saved."},
    "members.not_found": {"fr": "Ce membre n'existe pas.", "en": "This member does not exist."},
    "field.name": {"fr": "Nom et prénom", "en": "Full name"},
    "field.number": {"fr": "Numéro d'adhérent", "en": "Member number"},
    "field.number_help": {
        "fr": "Laissez vide pour un numéro automatique.",
        "en": "Leave empty for an automatic number.",
    },
    "field.email": {"fr": "E-mail", "en": "E-mail"},
    "field.phone": {"fr": "Téléphone", "en": "Phone"},
    "field.role": {"fr": "Type d'accès", "en": "Access type"},
    "field.role.member": {"fr": "Membre (selon son forfait)", "en": "Member (per their plan)"},
    "field.role.admin": {
        "fr": "Responsable (entre à toute heure, même les jours de fermeture)",
        "en": "Manager (gets in at any time, even on closure days)",
    },
    "field.plan": {"fr": "Forfait", "en": "Plan"},
    "field.plan_none": {"fr": "Aucun forfait (porte refusée)", "en": "No plan (door denied)"},
    "field.valid_from": {"fr": "Valide à partir du", "en": "Valid from"},
    "field.valid_until": {"fr": "Valide jusqu'au (inclus)", "en": "Valid until (inclusive)"},
    "field.validity_help": {
        "fr": "Laissez vide pour une validité sans limite.",
        "en": "Leave empty for no limit.",
    },
    "field.notes": {"fr": "Notes", "en": "Notes"},
    "field.reason": {"fr": "Motif", "en": "Reason"},
    "members.suspend_title": {"fr": "Suspendre l'accès", "en": "Suspend access"},
    "members.suspend_help": {
        "fr": "Le membre ne pourra plus ouvrir la porte jusqu'à sa réactivation.",
        "en": "The member will not be able to open the door until reactivated.",
    },
    "members.suspend": {"fr": "Suspendre", "en": "Suspend"},
    "members.suspended_because": {
        "fr": "Accès suspendu. Motif : {reason}",
        "en": "Access suspended. Reason: {reason}",
    },
    "members.suspended_no_reason": {"fr": "Accès suspendu.", "en": "Access suspended."},
    "members.reactivate": {"fr": "Réactiver l'accès", "en": "Reactivate access"},
    "members.suspended_done": {"fr": "Accès suspendu.", "en": "Access suspended."},
    "members.reactivated_done": {"fr": "Accès réactivé.", "en": "Access reactivated."},
    "members.reason_too_long": {
        "fr": "Motif trop long (200 caractères au plus).",
        "en": "Reason too long (200 characters at most).",
    },
    "members.archive_title": {"fr": "Archiver", "en": "Archive"},
    "members.archive_help": {
        "fr": "Pour un membre qui est parti : il disparaît de la liste et ses badges "
        "n'ouvrent plus. Son historique reste dans le journal.",
        "en": "For a member who has left: they disappear from the list and their badges no "
        "longer open. Their history stays in the log.",
    },
    "members.archive": {"fr": "Archiver ce membre", "en": "Archive this member"},
    "members.archive_confirm": {
        "fr": "Je confirme l'archivage",
        "en": "I confirm archiving",
    },
    "members.archive_need_confirm": {
        "fr": "Cochez la case de confirmation pour archiver.",
        "en": "Tick the confirmation box to archive.",
    },
    "members.archived_done": {"fr": "Membre archivé.", "en": "Member archived."},
    "members.restore": {"fr": "Restaurer ce membre", "en": "Restore this member"},
    "members.restored_done": {"fr": "Membre restauré.", "en": "Member restored."},
    "members.archived_notice": {
        "fr": "Ce membre est archivé : ses badges n'ouvrent pas la porte.",
        "en": "This member is archived: their badges do not open the door.",
    },
    "badges.title": {"fr": "Badges", "en": "Badges"},
    "badges.none": {"fr": "Aucun badge.", "en": "No badge."},
    "badges.ref": {"fr": "Badge", "en": "Badge"},
    "badges.enrolled": {"fr": "Enregistré le", "en": "Enrolled on"},
    "badges.by": {"fr": "par {name}", "en": "by {name}"},
    "badges.state": {"fr": "État", "en": "State"},
    "badges.live": {"fr": "Actif", "en": "Active"},
    "badges.revoked": {"fr": "Désactivé le {date}", "en": "Deactivated on {date}"},
    "badges.revoke": {"fr": "Désactiver", "en": "Deactivate"},
    "badges.revoke_help": {
        "fr": "Badge perdu ou rendu ? Désactivez-le : il n'ouvrira plus la porte.",
        "en": "Badge lost or returned? Deactivate it: it will no longer open the door.",
    },
    "badges.revoked_done": {"fr": "Badge {ref} désactivé.", "en": "Badge {ref} deactivated."},
    "badges.enroll": {"fr": "Enrôler un badge", "en": "Enroll a badge"},
    "badges.enroll_help": {
        "fr": "Cliquez, puis présentez le badge sur le lecteur de la porte dans la minute.",
        "en": "Click, then present the badge on the door reader within a minute.",
    },
    "badges.enroll_waiting": {
        "fr": "Présentez le badge sur le lecteur…",
        "en": "Present the badge on the reader…",
    },
    "badges.enroll_cancel": {"fr": "Annuler l'enrôlement", "en": "Cancel enrollment"},
    "badges.enroll_cancelled": {"fr": "Enrôlement annulé.", "en": "Enrollment cancelled."},
    "badges.enroll_expired": {
        "fr": "Temps écoulé sans badge : cliquez à nouveau sur « Enrôler un badge ».",
        "en": "Time ran out with no badge: click \"Enroll a badge\" again.",
    },
    "badges.enroll_other": {
        "fr": "Un enrôlement est déjà en cours pour {name}. Attendez qu'il se termine.",
        "en": "An enrollment is already running for {name}. Wait for it to finish.",
    },
    "badges.enrolled_done": {
        "fr": "Badge {ref} enregistré pour ce membre. Il ouvre la porte dès maintenant.",
        "en": "Badge {ref} registered to this member. It opens the door from now on.",
    },
    "badges.archived_no_enroll": {
        "fr": "Restaurez le membre avant d'enrôler un badge.",
        "en": "Restore the member before enrolling a badge.",
    },
    # --- plans ----------------------------------------------------------------------------
    "plans.title": {"fr": "Forfaits et horaires", "en": "Plans and hours"},
    "plans.config_note": {
        "fr": "Les forfaits, horaires et jours de fermeture se modifient dans le fichier de "
        "configuration du site ({path}), puis en redémarrant le boîtier. Cette page les "
        "affiche seulement.",
        "en": "Plans, hours and closure days are set in the site configuration file "
        "({path}), then take effect after restarting the box. This page only shows them.",
    },
    "plans.config_default": {
        "fr": "fichier de configuration",
        "en": "configuration file",
    },
    "plans.none": {"fr": "Aucun forfait n'est défini.", "en": "No plan is defined."},
    "plans.code": {"fr": "Code : {name}", "en": "Code: {name}"},
    "plans.always": {"fr": "Accès à toute heure, tous les jours", "en": "Access at any time"},
    "plans.no_window": {"fr": "Aucun horaire : porte refusée", "en": "No hours: door denied"},
    "plans.members": {"fr": "{n} membre(s) sur ce forfait", "en": "{n} member(s) on this plan"},
    "plans.window": {"fr": "{days} : {start} – {end}", "en": "{days}: {start} – {end}"},
    "plans.next_day": {"fr": " (le lendemain)", "en": " (next day)"},
    "plans.closures": {"fr": "Jours de fermeture", "en": "Closure days"},
    "plans.closures_help": {
        "fr": "Ces jours-là, seuls les responsables peuvent entrer.",
        "en": "On these days only managers can get in.",
    },
    "plans.no_closures": {"fr": "Aucune fermeture prévue.", "en": "No closure planned."},
    "plans.closure_range": {"fr": "du {start} au {end}", "en": "from {start} to {end}"},
    "plans.every_day": {"fr": "Tous les jours", "en": "Every day"},
    "plans.day_range": {"fr": "du {first} au {last}", "en": "{first} to {last}"},
    "day.0": {"fr": "lundi", "en": "Monday"},
    "day.1": {"fr": "mardi", "en": "Tuesday"},
    "day.2": {"fr": "mercredi", "en": "Wednesday"},
    "day.3": {"fr": "jeudi", "en": "Thursday"},
    "day.4": {"fr": "vendredi", "en": "Friday"},
    "day.5": {"fr": "samedi", "en": "Saturday"},
    "day.6": {"fr": "dimanche", "en": "Sunday"},
    # --- door page ------------------------------------------------------------------------
    "doorpage.title": {"fr": "Porte", "en": "Door"},
    "doorpage.unlock": {"fr": "Ouvrir la porte à distance", "en": "Unlock the door remotely"},
    "doorpage.unlock_help": {
        "fr": "La porte se déverrouille quelques secondes, comme avec un badge. L'ouverture "
        "est inscrite au journal à votre nom.",
        "en": "The door unlocks for a few seconds, as with a badge. The unlock is logged "
        "under your name.",
    },
    "doorpage.confirm_title": {"fr": "Ouvrir la porte maintenant ?", "en": "Unlock the door now?"},
    "doorpage.confirm_text": {
        "fr": "N'importe qui devant la porte pourra entrer pendant quelques secondes.",
        "en": "Anyone at the door will be able to get in for a few seconds.",
    },
    "doorpage.confirm_yes": {"fr": "Oui, ouvrir la porte", "en": "Yes, unlock the door"},
    "doorpage.unlocked": {
        "fr": "Porte déverrouillée pour quelques secondes.",
        "en": "Door unlocked for a few seconds.",
    },
    "doorpage.staff": {
        "fr": "Seul un administrateur peut ouvrir la porte à distance.",
        "en": "Only an administrator can unlock the door remotely.",
    },
    # --- captive portal (the Wi-Fi's login pages) -----------------------------------------
    "portal.title": {"fr": "Connexion au Wi-Fi", "en": "Wi-Fi login"},
    "portal.welcome": {"fr": "Bienvenue au {site}", "en": "Welcome to {site}"},
    "portal.guest_title": {"fr": "Invité", "en": "Guest"},
    "portal.guest_help": {
        "fr": "Accès gratuit pour la journée, avec un volume limité. Un code de ticket, si "
        "vous en avez un, donne le volume du ticket.",
        "en": "Free access for the day, with a limited volume. A voucher code, if you have "
        "one, gives the voucher's volume.",
    },
    "portal.accept": {"fr": "J'accepte les", "en": "I accept the"},
    "portal.terms_link": {"fr": "conditions d'utilisation", "en": "terms of use"},
    "portal.voucher_label": {
        "fr": "Code du ticket (facultatif)",
        "en": "Voucher code (optional)",
    },
    "portal.guest_submit": {"fr": "Accéder à Internet", "en": "Go online"},
    "portal.member_title": {"fr": "Membre", "en": "Member"},
    "portal.identifier": {
        "fr": "E-mail ou numéro d'adhérent",
        "en": "E-mail or member number",
    },
    "portal.secret": {"fr": "Mot de passe Wi-Fi ou code PIN", "en": "Wi-Fi password or PIN"},
    "portal.member_submit": {"fr": "Se connecter", "en": "Sign in"},
    "portal.member_help": {
        "fr": "Pas encore de mot de passe Wi-Fi ? Demandez-le à l'accueil du télécentre.",
        "en": "No Wi-Fi password yet? Ask at the telecentre's desk.",
    },
    "portal.accept_terms": {
        "fr": "Cochez la case pour accepter les conditions d'utilisation.",
        "en": "Tick the box to accept the terms of use.",
    },
    "portal.bad_voucher": {
        "fr": "Code de ticket inconnu ou expiré. Vérifiez-le (les tirets sont facultatifs).",
        "en": "Unknown or expired voucher code. Check it (dashes are optional).",
    },
    "portal.voucher_full": {
        "fr": "Ce ticket sert déjà sur le nombre maximal d'appareils.",
        "en": "This voucher is already used on its maximum number of devices.",
    },
    "portal.bad_login": {
        "fr": "Identifiant ou mot de passe Wi-Fi incorrect.",
        "en": "Wrong identifier or Wi-Fi password.",
    },
    "portal.not_allowed": {
        "fr": "Votre adhésion ne permet pas l'accès en ce moment (suspendue ou expirée). "
        "Voyez l'accueil du télécentre.",
        "en": "Your membership does not allow access right now (suspended or expired). "
        "Please ask at the telecentre's desk.",
    },
    "portal.rate_limited": {
        "fr": "Trop de tentatives. Réessayez dans {minutes} min.",
        "en": "Too many attempts. Try again in {minutes} min.",
    },
    "portal.refused": {
        "fr": "La connexion de cet appareil a été refusée. Déconnectez-vous du Wi-Fi, "
        "reconnectez-vous et réessayez.",
        "en": "This device could not be connected. Leave the Wi-Fi, join it again and "
        "retry.",
    },
    "portal.expired": {
        "fr": "La page a expiré. Rechargez-la et recommencez.",
        "en": "The page has expired. Reload it and try again.",
    },
    "portal.not_on_lan": {
        "fr": "Cet appareil n'est pas reconnu sur le Wi-Fi du télécentre. Connectez-vous "
        "au Wi-Fi, puis rechargez la page.",
        "en": "This device is not recognised on the telecentre's Wi-Fi. Join the Wi-Fi, "
        "then reload the page.",
    },
    "portal.lan_only": {
        "fr": "La connexion au Wi-Fi se fait uniquement depuis le Wi-Fi ou le réseau local du "
        "télécentre. Connectez-vous au Wi-Fi du télécentre, puis rechargez la page.",
        "en": "Wi-Fi login is only possible from the telecentre's Wi-Fi or local network. "
        "Join the telecentre's Wi-Fi, then reload the page.",
    },
    "portal.unavailable": {
        "fr": "La connexion au Wi-Fi est momentanément indisponible. Réessayez dans une "
        "minute ; si cela dure, prévenez l'accueil.",
        "en": "Wi-Fi login is unavailable for a moment. Try again in a minute; if it lasts, "
        "tell the desk.",
    },
    "portal.too_large": {
        "fr": "Formulaire trop volumineux.",
        "en": "Form too large.",
    },
    "portal.status_title": {"fr": "Votre connexion", "en": "Your connection"},
    "portal.online": {"fr": "Vous êtes connecté à Internet.", "en": "You are online."},
    "portal.kind.guest": {"fr": "Accès invité", "en": "Guest access"},
    "portal.kind.voucher": {"fr": "Accès par ticket", "en": "Voucher access"},
    "portal.kind.member": {"fr": "Accès membre", "en": "Member access"},
    "portal.used": {"fr": "Volume utilisé aujourd'hui", "en": "Used today"},
    "portal.remaining": {"fr": "Volume restant", "en": "Remaining"},
    "portal.time_left": {"fr": "Temps restant", "en": "Time left"},
    "portal.reset_in": {"fr": "Remise à zéro dans", "en": "Resets in"},
    "portal.logout": {"fr": "Se déconnecter", "en": "Log out"},
    "portal.logged_out": {
        "fr": "Cet appareil est déconnecté d'Internet. À bientôt !",
        "en": "This device is now offline. See you soon!",
    },
    "portal.throttled": {
        "fr": "Volume du jour épuisé : la connexion est ralentie jusqu'à minuit.",
        "en": "Today's volume is used up: the connection is slowed until midnight.",
    },
    "portal.quota_title": {"fr": "Volume du jour atteint", "en": "Daily volume reached"},
    "portal.quota_text": {
        "fr": "Cet accès a utilisé tout son volume du jour ({limit}).",
        "en": "This access has used all of today's volume ({limit}).",
    },
    "portal.quota_blocked": {
        "fr": "L'accès à Internet est suspendu jusqu'à la remise à zéro.",
        "en": "Internet access is paused until the reset.",
    },
    "portal.quota_reset": {
        "fr": "Remise à zéro à minuit, dans {duration}.",
        "en": "The volume resets at midnight, in {duration}.",
    },
    "portal.quota_help": {
        "fr": "Besoin de plus ? L'accueil peut prolonger votre accès ou vous donner un ticket.",
        "en": "Need more? The desk can extend your access or give you a voucher.",
    },
    "portal.terms_title": {"fr": "Conditions d'utilisation", "en": "Terms of use"},
    "portal.terms_1": {
        "fr": "Le Wi-Fi du télécentre est partagé : chaque accès a un volume quotidien et "
        "un débit limité, pour que tout le monde puisse travailler.",
        "en": "The telecentre's Wi-Fi is shared: each access has a daily volume and a "
        "limited speed, so that everyone can work.",
    },
    "portal.terms_2": {
        "fr": "Comme la loi l'exige (CPCE, art. L34-1), le télécentre conserve un an les "
        "données de connexion : appareil (adresse MAC et IP), heures, volume. Jamais les "
        "sites visités ni les contenus.",
        "en": "As French law requires (CPCE, art. L34-1), the telecentre keeps connection "
        "data for one year: device (MAC and IP address), times, volume. Never the sites "
        "visited or any content.",
    },
    "portal.terms_3": {
        "fr": "Vous vous engagez à respecter la loi et les autres usagers.",
        "en": "You agree to respect the law and the other users.",
    },
    "portal.back": {"fr": "Retour", "en": "Back"},
    # --- Wi-Fi (panel) ----------------------------------------------------------------------
    "wifi.title": {"fr": "Wi-Fi du télécentre", "en": "The telecentre's Wi-Fi"},
    "wifi.unreachable": {
        "fr": "Le service Wi-Fi (passerelle) ne répond pas : il est arrêté ou en train de "
        "redémarrer. Les appareils connectés, les tickets et le journal légal ne peuvent "
        "pas être modifiés pour le moment. Si cela dure, redémarrez le boîtier.",
        "en": "The Wi-Fi service (gateway) is not responding: it is stopped or restarting. "
        "Connected devices, vouchers and the legal log cannot be changed for now. If this "
        "lasts, restart the box.",
    },
    "wifi.lan_missing": {
        "fr": "Le réseau Wi-Fi n'est pas prêt : l'interface « {interface} » n'existe pas sur le "
        "boîtier (adaptateur Wi-Fi absent, ou mauvais nom lan_interface dans "
        "telecentre.toml). Personne ne peut se connecter ; le boîtier réessaie toutes les "
        "30 secondes.",
        "en": "The Wi-Fi network is not ready: the interface \"{interface}\" does not exist on "
        "the box (no Wi-Fi adapter, or a wrong lan_interface in telecentre.toml). Nobody can "
        "connect; the box tries again every 30 seconds.",
    },
    "wifi.forwarding_off": {
        "fr": "Le boîtier ne transmet pas le trafic vers Internet (net.ipv4.ip_forward vaut 0) : "
        "les appareils voient le portail mais n'ont pas Internet. Redémarrez le boîtier ; si "
        "cela continue, le système du boîtier a été modifié.",
        "en": "The box does not forward traffic to the internet (net.ipv4.ip_forward is 0): "
        "devices see the portal but get no internet. Restart the box; if this goes on, the "
        "box's system was modified.",
    },
    "wifi.refused": {
        "fr": "Le service Wi-Fi a refusé la commande ({detail}).",
        "en": "The Wi-Fi service refused the command ({detail}).",
    },
    "wifi.mb": {"fr": "{n} Mo", "en": "{n} MB"},
    "wifi.mbit": {"fr": "{n} Mbit/s", "en": "{n} Mbit/s"},
    "wifi.devices": {"fr": "Appareils connectés", "en": "Connected devices"},
    "wifi.no_devices": {"fr": "Aucun appareil connecté.", "en": "No device connected."},
    "wifi.devices_help": {
        "fr": "Un membre partage son volume entre tous ses appareils ; un ticket entre les "
        "appareils qui l'utilisent. « Prolonger » ajoute du volume pour aujourd'hui ; "
        "« Remettre à zéro » efface la consommation du jour ; « Déconnecter » renvoie "
        "l'appareil vers la page de connexion.",
        "en": "A member shares their volume across all their devices; a voucher across the "
        "devices using it. \"Extend\" adds volume for today; \"Reset\" clears today's usage; "
        "\"Disconnect\" sends the device back to the login page.",
    },
    "wifi.class": {"fr": "Type", "en": "Class"},
    "wifi.who": {"fr": "Qui", "en": "Who"},
    "wifi.device": {"fr": "Appareil (nom, MAC, IP)", "en": "Device (name, MAC, IP)"},
    "wifi.usage": {"fr": "Volume du jour", "en": "Today's volume"},
    "wifi.used_of": {"fr": "{used} sur {limit}", "en": "{used} of {limit}"},
    "wifi.spent": {"fr": "épuisé", "en": "used up"},
    "wifi.rate": {"fr": "Débit actuel", "en": "Current rate"},
    "wifi.rate_value": {"fr": "↓ {down} ↑ {up}", "en": "↓ {down} ↑ {up}"},
    "wifi.actions": {"fr": "Actions", "en": "Actions"},
    "wifi.extend_by": {"fr": "Volume à ajouter", "en": "Volume to add"},
    "wifi.extend": {"fr": "Prolonger", "en": "Extend"},
    "wifi.reset": {"fr": "Remettre à zéro", "en": "Reset"},
    "wifi.kick": {"fr": "Déconnecter", "en": "Disconnect"},
    "wifi.kicked": {"fr": "Appareil déconnecté.", "en": "Device disconnected."},
    "wifi.extended": {"fr": "Volume prolongé pour aujourd'hui.",
                      "en": "Volume extended for today."},
    "wifi.was_reset": {"fr": "Consommation du jour remise à zéro.", "en": "Today's usage reset."},
    "wifi.kind.member": {"fr": "Membre", "en": "Member"},
    "wifi.kind.voucher": {"fr": "Ticket", "en": "Voucher"},
    "wifi.kind.guest": {"fr": "Invité", "en": "Guest"},
    "wifi.member_n": {"fr": "Membre n° {n}", "en": "Member #{n}"},
    "wifi.member_named": {"fr": "{name} (n° {number})", "en": "{name} (no. {number})"},
    "wifi.voucher_n": {"fr": "Ticket n° {n} ({batch})", "en": "Voucher #{n} ({batch})"},
    "wifi.guest_n": {"fr": "Invité n° {n}", "en": "Guest #{n}"},
    "wifi.policies": {"fr": "Règles par type d'accès", "en": "Rules per access class"},
    "wifi.policies_help": {
        "fr": "Ces règles se changent dans le fichier de configuration (sections "
        "[gateway.member] et [gateway.guest]). Les tickets suivent les débits des invités, "
        "avec le volume choisi à leur création.",
        "en": "These rules are changed in the configuration file ([gateway.member] and "
        "[gateway.guest] sections). Vouchers get the guests' rates, with the volume chosen "
        "when they were made.",
    },
    "wifi.daily_quota": {"fr": "Volume par jour", "en": "Daily volume"},
    "wifi.down": {"fr": "Débit descendant", "en": "Download rate"},
    "wifi.up": {"fr": "Débit montant", "en": "Upload rate"},
    "wifi.when_spent": {"fr": "Volume épuisé", "en": "When used up"},
    "wifi.when_spent.block": {"fr": "Accès coupé jusqu'à minuit", "en": "Blocked until midnight"},
    "wifi.when_spent.throttle": {
        "fr": "Ralenti à 256 kbit/s jusqu'à minuit",
        "en": "Slowed to 256 kbit/s until midnight",
    },
    "wifi.back": {"fr": "← Retour au Wi-Fi", "en": "← Back to Wi-Fi"},
    # vouchers
    "wifi.vouchers": {"fr": "Tickets Wi-Fi", "en": "Wi-Fi vouchers"},
    "wifi.new_batch": {"fr": "Créer des tickets", "en": "Make vouchers"},
    "wifi.field.count": {"fr": "Nombre de tickets", "en": "Number of vouchers"},
    "wifi.field.quota_mb": {"fr": "Volume par jour (Mo)", "en": "Daily volume (MB)"},
    "wifi.field.max_devices": {"fr": "Appareils par ticket", "en": "Devices per voucher"},
    "wifi.field.valid_days": {"fr": "Valable", "en": "Valid for"},
    "wifi.field.batch": {"fr": "Nom du lot", "en": "Batch name"},
    "wifi.field.batch_help": {
        "fr": "Facultatif, par exemple « Fête du village ». Vide : la date et l'heure.",
        "en": "Optional, for example \"Village fair\". Empty: the date and time.",
    },
    "wifi.days": {"fr": "{n} jour(s)", "en": "{n} day(s)"},
    "wifi.range": {
        "fr": "Entrez un nombre entier de {lo} à {hi}.",
        "en": "Enter a whole number from {lo} to {hi}.",
    },
    "wifi.make": {"fr": "Créer et imprimer", "en": "Make and print"},
    "wifi.vouchers_help": {
        "fr": "Les codes ne sont affichés qu'une fois, sur la feuille à imprimer : le "
        "boîtier n'en garde qu'une empreinte. Feuille perdue ? Révoquez ces tickets et "
        "créez-en d'autres.",
        "en": "Codes are shown only once, on the sheet to print: the box keeps only a "
        "fingerprint of them. Sheet lost? Revoke those vouchers and make new ones.",
    },
    "wifi.voucher_list": {"fr": "Derniers tickets", "en": "Latest vouchers"},
    "wifi.no_vouchers": {"fr": "Aucun ticket pour l'instant.", "en": "No voucher yet."},
    "wifi.voucher_no": {"fr": "N°", "en": "No."},
    "wifi.state": {"fr": "État", "en": "State"},
    "wifi.valid_until": {"fr": "Valable jusqu'au", "en": "Valid until"},
    "wifi.voucher_state.new": {"fr": "Pas encore utilisé", "en": "Not used yet"},
    "wifi.voucher_state.used": {"fr": "En service", "en": "In use"},
    "wifi.voucher_state.expired": {"fr": "Expiré", "en": "Expired"},
    "wifi.voucher_state.revoked": {"fr": "Révoqué", "en": "Revoked"},
    "wifi.devices_of": {"fr": "{n} sur {max}", "en": "{n} of {max}"},
    "wifi.revoke": {"fr": "Révoquer", "en": "Revoke"},
    "wifi.revoked": {
        "fr": "Ticket révoqué ; appareils déconnectés : {n}.",
        "en": "Voucher revoked; devices disconnected: {n}.",
    },
    "wifi.sheet_gone": {
        "fr": "Cette feuille de codes n'est plus disponible (elle n'est gardée qu'une heure, "
        "et pas après un redémarrage). Révoquez ce lot et créez-en un autre.",
        "en": "This sheet of codes is no longer available (it is kept one hour, and not "
        "across a restart). Revoke that batch and make another.",
    },
    "wifi.sheet_title": {"fr": "Tickets Wi-Fi à imprimer", "en": "Wi-Fi vouchers to print"},
    "wifi.sheet_print": {
        "fr": "Imprimez cette page maintenant (menu du navigateur, ou Ctrl+P) : les codes "
        "ne seront plus affichés ensuite. Découpez le long des pointillés.",
        "en": "Print this page now (browser menu, or Ctrl+P): the codes will not be shown "
        "again. Cut along the dashes.",
    },
    "wifi.back_vouchers": {"fr": "← Retour aux tickets", "en": "← Back to vouchers"},
    "wifi.ticket_heading": {"fr": "Ticket d'accès Wi-Fi · Wi-Fi voucher",
                            "en": "Wi-Fi voucher · Ticket d'accès Wi-Fi"},
    "wifi.ticket_valid": {"fr": "Valable jusqu'au {date}", "en": "Valid until {date}"},
    "wifi.ticket_quota": {"fr": "Volume : {quota} par jour", "en": "Volume: {quota} a day"},
    "wifi.ticket_devices": {"fr": "Appareils : {n}", "en": "Devices: {n}"},
    "wifi.ticket_how": {
        "fr": "Connectez-vous au Wi-Fi, ouvrez un site : la page de connexion s'affiche. "
        "Entrez ce code (tirets facultatifs).",
        "en": "Join the Wi-Fi, open a website: the login page appears. Enter this code "
        "(dashes optional).",
    },
    # legal log
    "wifi.log_title": {"fr": "Journal légal du Wi-Fi", "en": "Wi-Fi legal log"},
    "wifi.log_help": {
        "fr": "Une ligne par connexion d'appareil : qui, adresse MAC, adresse IP, début, "
        "fin, volume. Jamais les sites visités. La loi (CPCE, art. L34-1) impose de le "
        "conserver un an ; il est effacé après {days} jours. À n'exporter que pour une "
        "réquisition judiciaire.",
        "en": "One row per device connection: who, MAC address, IP address, start, end, "
        "volume. Never the sites visited. French law (CPCE, art. L34-1) requires keeping it "
        "one year; it is deleted after {days} days. Export it only for a legal request.",
    },
    "wifi.log_export": {"fr": "Exporter en CSV (réquisition)",
                        "en": "Export as CSV (legal request)"},
    "wifi.log_empty": {
        "fr": "Aucune connexion sur cette période.",
        "en": "No connection in this period.",
    },
    "wifi.mac": {"fr": "Adresse MAC", "en": "MAC address"},
    "wifi.ip": {"fr": "Adresse IP", "en": "IP address"},
    "wifi.start": {"fr": "Début", "en": "Start"},
    "wifi.end": {"fr": "Fin", "en": "End"},
    "wifi.ongoing": {"fr": "en cours", "en": "ongoing"},
    "wifi.bytes_up": {"fr": "Envoyé", "en": "Sent"},
    "wifi.bytes_down": {"fr": "Reçu", "en": "Received"},
    # a member's Wi-Fi secret
    "wifi.secret_title": {"fr": "Mot de passe Wi-Fi", "en": "Wi-Fi password"},
    "wifi.secret_none": {
        "fr": "Aucun mot de passe Wi-Fi : ce membre ne peut pas encore se connecter au Wi-Fi.",
        "en": "No Wi-Fi password: this member cannot log in to the Wi-Fi yet.",
    },
    "wifi.secret_since": {"fr": "Défini le {date}.", "en": "Set on {date}."},
    "wifi.secret_label": {"fr": "Nouveau mot de passe ou code PIN", "en": "New password or PIN"},
    "wifi.secret_help": {
        "fr": "Un code PIN de 6 à 12 chiffres, ou un mot de passe de 8 caractères ou plus. "
        "Donnez-le au membre : il n'est plus affichable ensuite.",
        "en": "A PIN of 6 to 12 digits, or a password of 8 characters or more. Give it to "
        "the member: it cannot be shown again.",
    },
    "wifi.secret_set_button": {"fr": "Enregistrer le mot de passe Wi-Fi",
                               "en": "Save the Wi-Fi password"},
    "wifi.secret_set": {"fr": "Mot de passe Wi-Fi enregistré.", "en": "Wi-Fi password saved."},
    # --- line (link monitor) --------------------------------------------------------------
    "line.title": {"fr": "Ligne internet", "en": "Internet line"},
    "line.unreachable": {
        "fr": "Le moniteur de ligne ne répond pas (service telecentre-link arrêté ?). "
              "L'historique ci-dessous reste consultable.",
        "en": "The line monitor does not answer (telecentre-link service stopped?). "
              "The history below is still available.",
    },
    "line.refused": {"fr": "Le moniteur de ligne a refusé : {detail}",
                     "en": "The line monitor refused: {detail}"},
    "line.state.up": {"fr": "La ligne fonctionne", "en": "The line is up"},
    "line.state.down": {"fr": "La ligne est coupée", "en": "The line is down"},
    "line.state.up_previous": {
        "fr": "La ligne fonctionnait au dernier relevé ({when}), avant le redémarrage du "
              "moniteur de ligne. Nouvelle vérification en cours.",
        "en": "The line was up at the last check ({when}), before the line monitor "
              "restarted. Checking it again now.",
    },
    "line.state.down_previous": {
        "fr": "La ligne était coupée au dernier relevé ({when}), avant le redémarrage du "
              "moniteur de ligne. Nouvelle vérification en cours.",
        "en": "The line was down at the last check ({when}), before the line monitor "
              "restarted. Checking it again now.",
    },
    "line.cause.lan": {
        "fr": "La box ne répond pas : vérifiez qu'elle est allumée et que le câble entre "
              "la box et le boîtier est branché.",
        "en": "The ISP box does not answer: check that it is switched on and that the "
              "cable between the box and this device is plugged in.",
    },
    "line.cause.access": {
        "fr": "La box répond mais rien au-delà : la ligne de l'opérateur est coupée. "
              "Appelez le fournisseur d'accès.",
        "en": "The box answers but nothing beyond it: the ISP's line is down. "
              "Call the internet provider.",
    },
    "line.cause.upstream": {
        "fr": "La ligne fonctionne mais une partie d'internet est injoignable (au-delà de "
              "l'opérateur). Souvent temporaire.",
        "en": "The line works but part of the internet is unreachable (beyond the ISP). "
              "Often temporary.",
    },
    "line.cause.dns": {
        "fr": "Les adresses répondent mais les noms de sites ne se résolvent pas (serveur "
              "DNS). Les sites ne s'ouvrent pas par leur nom.",
        "en": "Addresses answer but site names do not resolve (DNS server). Websites do "
              "not open by name.",
    },
    "line.cause_short.lan": {"fr": "Box ou réseau local", "en": "Box or local network"},
    "line.cause_short.access": {"fr": "Ligne de l'opérateur", "en": "ISP access line"},
    "line.cause_short.upstream": {"fr": "Au-delà de l'opérateur", "en": "Beyond the ISP"},
    "line.cause_short.dns": {"fr": "DNS (noms)", "en": "DNS (names)"},
    "line.since": {"fr": "depuis {when}", "en": "since {when}"},
    "line.last_test": {"fr": "Dernière mesure", "en": "Last test"},
    "line.no_test": {"fr": "Aucune mesure de débit pour l'instant.",
                     "en": "No throughput test yet."},
    "line.budget": {
        "fr": "Données utilisées par les mesures ce mois-ci : {used} Mo sur {budget} Mo.",
        "en": "Data used by tests this month: {used} MB of {budget} MB.",
    },
    "line.result.ok": {"fr": "Mesure réussie", "en": "Test done"},
    "line.result.failed": {"fr": "La mesure a échoué", "en": "The test failed"},
    "line.result.skipped_busy": {"fr": "Mesure reportée : ligne occupée",
                                 "en": "Test skipped: line busy"},
    "line.result.skipped_budget": {"fr": "Mesure reportée : budget du mois épuisé",
                                   "en": "Test skipped: monthly budget spent"},
    "line.result.summary": {
        "fr": "{down} Mbit/s en réception, {up} Mbit/s en envoi, latence sous charge {grade}",
        "en": "{down} Mbit/s down, {up} Mbit/s up, latency under load {grade}",
    },
    "line.test_now": {"fr": "Mesurer maintenant", "en": "Test now"},
    "line.test_help": {
        "fr": "Mesure le débit réel de la ligne (environ 20 secondes). Pendant la mesure, "
              "la ligne est saturée : les usagers le sentiront.",
        "en": "Measures the line's real speed (about 20 seconds). During the test the "
              "line is saturated: users will notice.",
    },
    "line.test_anyway": {"fr": "Mesurer quand même", "en": "Test anyway"},
    "line.started": {
        "fr": "Mesure lancée. Elle dure environ 20 secondes : rechargez la page pour voir "
              "le résultat.",
        "en": "Test started. It takes about 20 seconds: reload the page to see the result.",
    },
    "line.already_running": {
        "fr": "Une mesure est déjà en cours : rechargez la page pour voir le résultat.",
        "en": "A test is already running: reload the page to see the result.",
    },
    "line.reload": {"fr": "Recharger la page", "en": "Reload the page"},
    "line.staff": {"fr": "Seul un administrateur peut lancer une mesure.",
                   "en": "Only an administrator can start a test."},
    "line.warning.title": {"fr": "Une mesure maintenant n'est pas conseillée :",
                           "en": "A test now is not advised:"},
    "line.warning.budget": {
        "fr": "le budget de données des mesures est épuisé pour ce mois",
        "en": "this month's data budget for tests is spent",
    },
    "line.warning.busy": {
        "fr": "des usagers utilisent la ligne en ce moment ; la mesure les ralentira",
        "en": "members are using the line right now; a test will slow them down",
    },
    "line.phase.0": {"fr": "Démarrage…", "en": "Starting…"},
    "line.phase.1": {"fr": "Attente d'une ligne calme…", "en": "Waiting for a quiet line…"},
    "line.phase.2": {"fr": "Latence au repos…", "en": "Idle latency…"},
    "line.phase.3": {"fr": "Réception (téléchargement)…", "en": "Download…"},
    "line.phase.4": {"fr": "Envoi…", "en": "Upload…"},
    "line.history": {"fr": "Historique", "en": "History"},
    "line.range": {"fr": "Période", "en": "Period"},
    "line.range.24h": {"fr": "24 heures", "en": "24 hours"},
    "line.range.7d": {"fr": "7 jours", "en": "7 days"},
    "line.range.30d": {"fr": "30 jours", "en": "30 days"},
    "line.chart.down": {"fr": "Débit en réception (Mbit/s)", "en": "Download (Mbit/s)"},
    "line.chart.up": {"fr": "Débit en envoi (Mbit/s)", "en": "Upload (Mbit/s)"},
    "line.chart.rtt": {"fr": "Latence vers internet (ms)", "en": "Latency to the internet (ms)"},
    "line.chart.loss": {"fr": "Pertes de paquets (%)", "en": "Packet loss (%)"},
    "line.chart.contract_legend": {
        "fr": "Trait plein : mesures. Pointillés rouges : débit vendu par l'opérateur.",
        "en": "Solid line: measurements. Red dashes: the rate the ISP sells.",
    },
    "line.chart.max": {"fr": "max. {value}", "en": "max {value}"},
    "line.chart.empty": {"fr": "Pas encore de données sur cette période.",
                         "en": "No data for this period yet."},
    "line.no_history": {"fr": "Pas encore d'historique.", "en": "No history yet."},
    "line.outages": {"fr": "Coupures (30 derniers jours)", "en": "Outages (last 30 days)"},
    "line.no_outage": {"fr": "Aucune coupure.", "en": "No outage."},
    "line.outage.cause": {"fr": "Cause", "en": "Cause"},
    "line.outage.start": {"fr": "Début", "en": "Start"},
    "line.outage.end": {"fr": "Fin", "en": "End"},
    "line.outage.minutes": {"fr": "Minutes", "en": "Minutes"},
    "line.outage.ongoing": {"fr": "en cours", "en": "ongoing"},
    # --- monthly ISP report ----------------------------------------------------------------
    "report.title": {"fr": "Rapport mensuel de la ligne — {month}",
                     "en": "Monthly line report — {month}"},
    "report.link": {"fr": "Rapport mensuel pour l'opérateur", "en": "Monthly report for the ISP"},
    "report.month": {"fr": "Mois", "en": "Month"},
    "report.site": {"fr": "Site", "en": "Site"},
    "report.show": {"fr": "Afficher", "en": "Show"},
    "report.csv": {"fr": "Télécharger (CSV)", "en": "Download (CSV)"},
    "report.print": {"fr": "Version imprimable", "en": "Printable version"},
    "report.help": {
        "fr": "Mesures réussies du mois seulement. La disponibilité ne compte que les "
              "coupures au-delà de la box (ligne, opérateur, DNS) ; les coupures de la box "
              "ou du réseau local sont indiquées à part.",
        "en": "Completed tests of the month only. Availability counts only outages beyond "
              "the box (line, ISP, DNS); outages of the box or local network are shown apart.",
    },
    "report.field": {"fr": "Indicateur", "en": "Figure"},
    "report.value": {"fr": "Valeur", "en": "Value"},
    "report.contract": {"fr": "Débit vendu", "en": "Contracted rate"},
    "report.contract_value": {"fr": "{down} Mbit/s / {up} Mbit/s",
                              "en": "{down} Mbit/s / {up} Mbit/s"},
    "report.tests": {"fr": "Mesures réussies", "en": "Completed tests"},
    "report.median_down": {"fr": "Débit médian en réception", "en": "Median download"},
    "report.median_up": {"fr": "Débit médian en envoi", "en": "Median upload"},
    "report.down_80": {"fr": "Mesures ≥ 80 % du débit vendu (réception)",
                       "en": "Tests ≥ 80 % of contract (download)"},
    "report.down_95": {"fr": "Mesures ≥ 95 % du débit vendu (réception)",
                       "en": "Tests ≥ 95 % of contract (download)"},
    "report.up_80": {"fr": "Mesures ≥ 80 % du débit vendu (envoi)",
                     "en": "Tests ≥ 80 % of contract (upload)"},
    "report.up_95": {"fr": "Mesures ≥ 95 % du débit vendu (envoi)",
                     "en": "Tests ≥ 95 % of contract (upload)"},
    "report.availability": {"fr": "Disponibilité (hors box)",
                            "en": "Availability (beyond the box)"},
    "report.outage_minutes": {"fr": "Minutes de coupure : {cause}",
                              "en": "Outage minutes: {cause}"},
    "report.worst_hour": {"fr": "Heure la plus lente : {hour} (médiane)",
                          "en": "Slowest hour: {hour} (median)"},
    "report.grade": {"fr": "Latence sous charge, note {grade}",
                     "en": "Latency under load, grade {grade}"},
}
