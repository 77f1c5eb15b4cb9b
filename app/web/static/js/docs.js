// The interactive API documentation (Swagger UI from npm, served by the app: no internet needed).
// Its own file, not an inline script: the page's Content Security Policy allows none.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
});
