// nightshift's own script, next to htmx: the pages carry no inline JavaScript (their
// Content-Security-Policy allows scripts from /static only), so behaviour comes from
// data- attributes read here.
//
//   <form data-confirm="Delete pool x?">   asks before the form is sent; the message is
//                                          plain text, never evaluated
//   <select data-autosubmit>               sends its form when the choice changes
//   <a href="/dags" data-back>              goes back in history (the href without it)
//
// Loaded without `defer` in <head>, so the listeners exist before any form does.
(function () {
  'use strict';

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-confirm')) return;
    if (!window.confirm(form.getAttribute('data-confirm'))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener('change', function (event) {
    var field = event.target;
    if (!(field instanceof HTMLSelectElement) || !field.hasAttribute('data-autosubmit')) return;
    var form = field.form;
    if (!form) return;
    // requestSubmit fires `submit`, so a data-confirm on the form still applies.
    if (typeof form.requestSubmit === 'function') form.requestSubmit();
    else form.submit();
  });

  document.addEventListener('click', function (event) {
    var link = event.target instanceof Element ? event.target.closest('a[data-back]') : null;
    if (!link || window.history.length < 2) return;
    event.preventDefault();
    window.history.back();
  });
})();
