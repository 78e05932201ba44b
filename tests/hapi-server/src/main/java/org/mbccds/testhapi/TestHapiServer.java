package org.mbccds.testhapi;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.batch.BatchAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.jdbc.DataSourceAutoConfiguration;
import org.springframework.boot.autoconfigure.jdbc.DataSourceTransactionManagerAutoConfiguration;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;

/**
 * Entry point: {@code java -jar mbc-cds-test-hapi.jar --server.port=N}.
 *
 * <p>Spring Boot's own data-source and JPA set-up is switched off: HAPI builds its entity manager itself
 * ({@link HapiServerConfig}), and two competing persistence units would not start.
 */
@SpringBootApplication(exclude = {
	DataSourceAutoConfiguration.class,
	DataSourceTransactionManagerAutoConfiguration.class,
	HibernateJpaAutoConfiguration.class,
	BatchAutoConfiguration.class,
	// HAPI brings the Elasticsearch client for its optional full-text index: no cluster is polled here
	ElasticsearchClientAutoConfiguration.class,
	ElasticsearchRestClientAutoConfiguration.class,
	QuartzAutoConfiguration.class,
	ThymeleafAutoConfiguration.class
})
public class TestHapiServer {
	public static void main(String[] args) {
		SpringApplication.run(TestHapiServer.class, args);
	}
}
